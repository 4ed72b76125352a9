"""Held-out evaluation while the system runs: some sessions' last item is never sent to ingest; the
newest global model is scored on those cases per region, next to a popularity baseline, and at the end
next to a centralized model trained on exactly the events the system was sent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from facet.contracts import BehaviourEvent
from facet.evaluation.metrics import ndcg, target_ranks
from facet.evaluation.scoring import policy_target_ranks
from facet.model.coldstart import ColdStartPolicy, prepare_cold_items, untrained_items
from facet.model.examples import make_windows
from facet.model.features import ItemCatalogue
from facet.model.network import ModelConfig, SequenceRecommender, new_model
from facet.model.training import train_epochs

from facet_lab.system.launches import LaunchTracker, PendingStep


class LiveEvaluator:
    def __init__(self, config: ModelConfig, max_cases_per_region: int = 400,
                 is_launch: Callable[[str], bool] = lambda _item: False,
                 cold_start: ColdStartPolicy | None = None) -> None:
        self.config = config
        #: Ranked as the recommenders serve: new items get the same cold-start policy (without the launch
        #: trend, which each recommender keeps from its own stream).
        self.cold_start = cold_start or ColdStartPolicy()
        self.launches = LaunchTracker(is_launch)
        self.space = config.feature_space()
        self.catalogue = ItemCatalogue(self.space)
        self.max_cases = max_cases_per_region
        self.history: dict[str, list[int]] = defaultdict(list)
        #: Each shopper's region (a shopper shops in one region), for training the centralized comparison.
        self.shopper_region: dict[str, str] = {}
        self.cases: dict[str, list[tuple[tuple[int, ...], int]]] = defaultdict(list)
        self.popularity: dict[str, np.ndarray] = {}
        self.global_popularity = np.zeros(4096)

    def sent(self, event: BehaviourEvent) -> None:
        item = self.catalogue.add_event(event)
        history = self.history[event.shopper_id]
        if not history or history[-1] != item:
            history.append(item)
        self.shopper_region.setdefault(event.shopper_id, event.region)
        counts = self.popularity.setdefault(event.region, np.zeros(4096))
        if item >= counts.size:
            counts = self.popularity[event.region] = np.concatenate([counts, np.zeros(item + 4096 - counts.size)])
        counts[item] += 1
        self.launches.sent(item, event.item_id)
        if item >= self.global_popularity.size:
            self.global_popularity = np.concatenate([self.global_popularity, np.zeros(item + 4096 -
                                                                                     self.global_popularity.size)])
        self.global_popularity[item] += 1

    def hold_out(self, event: BehaviourEvent) -> None:
        item = self.catalogue.add_event(event)
        history = self.history.get(event.shopper_id)
        if not history or history[-1] == item:
            return
        cases = self.cases[event.region]
        cases.append((tuple(history[-self.config.max_history :]), item))
        self.launches.held_out(cases[-1][0], item, event.item_id, event.region)
        if len(cases) > self.max_cases:
            del cases[0]

    def snapshot(self) -> EvalSnapshot:
        """A consistent copy, taken on the event loop, so scoring in a thread never races the producer."""
        buckets, attributes = self.catalogue.arrays()
        items = (torch.from_numpy(buckets.copy()), torch.from_numpy(attributes.copy()))
        size = len(buckets)
        cases = {r: [c for c in list(cs) if c[1] < size] for r, cs in self.cases.items()}
        return EvalSnapshot(items, size, cases, {r: self._counts(c, size) for r, c in self.popularity.items()},
                            self._counts(self.global_popularity, size), self.launches.take_pending(size))

    def evaluate(self, parameters: dict[str, torch.Tensor], snapshot: EvalSnapshot) -> dict[str, dict[str, float]]:
        """NDCG@10 of the model, of global and of regional popularity, per region, on the held-out cases."""
        model = SequenceRecommender(self.config)
        model.load_state_dict(parameters)
        return self.evaluate_model(model, snapshot, score_launches=True)

    def train_centralized(self, epochs: int, seed: int = 0) -> SequenceRecommender:
        """What federating costs: one model trained on every shopper's sent events in one place (which the
        product must never do with real data), with the same training loop the trainers use."""
        space = self.config.feature_space()
        sequences = [(space.region_bucket(self.shopper_region[s]), h) for s, h in self.history.items()
                     if len(h) >= 2]
        model = new_model(self.config, seed)
        windows = make_windows(sequences, self.config.max_history)
        if len(windows):
            train_epochs(model, self.catalogue, windows, epochs=epochs, seed=seed)
        return model

    def evaluate_model(self, model: SequenceRecommender, snapshot: EvalSnapshot, *,
                       score_launches: bool = False) -> dict[str, dict[str, float]]:
        items = snapshot.items
        ready = prepare_cold_items(model, items, untrained_items(model, items[0]), self.cold_start)

        def rank(histories: Sequence[Sequence[int]], region: str, targets: np.ndarray) -> np.ndarray:
            scores = ready.rank(histories, [self.space.region_bucket(region)] * len(histories)).numpy()
            return policy_target_ranks(scores, ready.cold.numpy(), ready.policy, targets)

        if score_launches:  # the served model's launch steps, each scored once
            self.launches.score(snapshot.launch_steps, rank)
        results: dict[str, dict[str, float]] = {}
        for region, cases in snapshot.cases.items():
            if len(cases) < 10:
                continue
            histories = [c[0] for c in cases]
            targets = np.asarray([c[1] for c in cases])
            results[region] = {
                "ndcg10": ndcg(rank(histories, region, targets)),
                "ndcg10_popularity": ndcg(target_ranks(_rows(snapshot.global_popularity, len(cases)), targets)),
                "ndcg10_regional_popularity": ndcg(target_ranks(
                    _rows(snapshot.popularity.get(region, np.zeros(snapshot.size)), len(cases)), targets)),
                "cases": float(len(cases)),
            }
        return results

    @staticmethod
    def _counts(counts: np.ndarray, size: int) -> np.ndarray:
        popular = np.zeros(size)
        upto = min(counts.size, size)
        popular[:upto] = counts[:upto]
        return popular


def federated_vs_centralized(federated: dict[str, dict[str, float]], centralized: dict[str, dict[str, float]], *,
                             version: int, training_seconds: float, epochs: int) -> dict[str, Any]:
    """NDCG@10 of both on the same cases, per region and overall (weighted by each region's cases)."""
    def ratio(fed: float, central: float) -> float | None:
        return fed / central if central > 0 else None

    shared = sorted(set(federated) & set(centralized))
    cases = {r: federated[r]["cases"] for r in shared}
    total = sum(cases.values()) or 1.0
    overall_fed = sum(federated[r]["ndcg10"] * cases[r] for r in shared) / total
    overall_central = sum(centralized[r]["ndcg10"] * cases[r] for r in shared) / total
    regions = {r: {"federated": federated[r]["ndcg10"], "centralized": centralized[r]["ndcg10"],
                   "ratio": ratio(federated[r]["ndcg10"], centralized[r]["ndcg10"]), "cases": cases[r]}
               for r in shared}
    return {"federated_version": version, "centralized_epochs": epochs,
            "centralized_training_seconds": training_seconds,
            "overall": {"federated": overall_fed, "centralized": overall_central,
                        "ratio": ratio(overall_fed, overall_central)},
            "regions": regions}


def _rows(counts: np.ndarray, rows: int) -> np.ndarray:
    return np.broadcast_to(counts, (rows, counts.size))


@dataclass(frozen=True)
class EvalSnapshot:
    items: tuple[torch.Tensor, torch.Tensor]
    size: int
    cases: dict[str, list[tuple[tuple[int, ...], int]]]
    popularity: dict[str, np.ndarray]
    global_popularity: np.ndarray
    launch_steps: list[PendingStep]
