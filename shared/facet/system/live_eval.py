"""Held-out evaluation while the system runs: some sessions' last item is never sent to ingest; the
newest global model is scored on those cases per region, next to a popularity baseline."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from facet.contracts import BehaviourEvent
from facet.evaluation.metrics import ndcg, target_ranks
from facet.model.features import ItemCatalogue
from facet.model.network import ModelConfig, SequenceRecommender
from facet.model.training import catalogue_tensors, score_histories


class LiveEvaluator:
    def __init__(self, config: ModelConfig, max_cases_per_region: int = 400) -> None:
        self.config = config
        self.space = config.feature_space()
        self.catalogue = ItemCatalogue(self.space)
        self.max_cases = max_cases_per_region
        self.history: dict[str, list[int]] = defaultdict(list)
        self.cases: dict[str, list[tuple[tuple[int, ...], int]]] = defaultdict(list)
        self.popularity: dict[str, np.ndarray] = {}

    def sent(self, event: BehaviourEvent) -> None:
        item = self.catalogue.add_event(event)
        history = self.history[event.shopper_id]
        if not history or history[-1] != item:
            history.append(item)
        counts = self.popularity.setdefault(event.region, np.zeros(4096))
        if item >= counts.size:
            counts = self.popularity[event.region] = np.concatenate([counts, np.zeros(item + 4096 - counts.size)])
        counts[item] += 1

    def hold_out(self, event: BehaviourEvent) -> None:
        item = self.catalogue.add_event(event)
        history = self.history.get(event.shopper_id)
        if not history or history[-1] == item:
            return
        cases = self.cases[event.region]
        cases.append((tuple(history[-self.config.max_history :]), item))
        if len(cases) > self.max_cases:
            del cases[0]

    def evaluate(self, parameters: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        """NDCG@10 of the model and of regional popularity, per region, over the held-out cases."""
        model = SequenceRecommender(self.config)
        model.load_state_dict(parameters)
        items = catalogue_tensors(self.catalogue)
        with torch.no_grad():
            model.eval()
            vectors = model.item_vectors(*items)
        results: dict[str, dict[str, float]] = {}
        for region, cases in list(self.cases.items()):
            if len(cases) < 10:
                continue
            histories = [c[0] for c in cases]
            targets = np.asarray([c[1] for c in cases])
            scores = score_histories(model, items, histories, [self.space.region_bucket(region)] * len(cases),
                                     vectors).numpy()
            popular = np.zeros(len(self.catalogue))
            counts = self.popularity.get(region, np.zeros(0))[: len(popular)]
            popular[: counts.size] = counts
            baseline = np.broadcast_to(popular, scores.shape)
            results[region] = {
                "ndcg10": ndcg(target_ranks(scores, targets)),
                "ndcg10_popularity": ndcg(target_ranks(baseline, targets)),
                "cases": float(len(cases)),
            }
        return results
