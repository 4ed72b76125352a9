"""Held-out evaluation while the system runs: some sessions' last item is never sent to ingest; the
newest global model is scored on those cases per region, next to a popularity baseline."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from facet.contracts import BehaviourEvent
from facet.evaluation.metrics import ndcg, target_ranks
from facet.model.coldstart import ColdStartPolicy, prepare_cold_items, untrained_items
from facet.model.features import ItemCatalogue
from facet.model.network import ModelConfig, SequenceRecommender

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
        self.cases: dict[str, list[tuple[tuple[int, ...], int]]] = defaultdict(list)
        self.popularity: dict[str, np.ndarray] = {}
        self.global_popularity = np.zeros(4096)

    def sent(self, event: BehaviourEvent) -> None:
        item = self.catalogue.add_event(event)
        history = self.history[event.shopper_id]
        if not history or history[-1] != item:
            history.append(item)
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
        items = snapshot.items
        ready = prepare_cold_items(model, items, untrained_items(model, items[0]), self.cold_start)

        def rank(histories: Sequence[Sequence[int]], region: str) -> np.ndarray:
            return ready.rank(histories, [self.space.region_bucket(region)] * len(histories)).numpy()

        self.launches.score(snapshot.launch_steps, rank)
        results: dict[str, dict[str, float]] = {}
        for region, cases in snapshot.cases.items():
            if len(cases) < 10:
                continue
            histories = [c[0] for c in cases]
            targets = np.asarray([c[1] for c in cases])
            scores = rank(histories, region)
            results[region] = {
                "ndcg10": ndcg(target_ranks(scores, targets)),
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
