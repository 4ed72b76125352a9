"""A time split that measures launches: train on everything before a cutoff, then predict every next
step after it, where the items first seen after the cutoff are a new collection.

The new items are announced at the cutoff, all at once: every scorer may rank any of them from then
on, and none of them knows when each was first bought. Using each item's first purchase as its launch
time instead would leak the answer (the item that "launched" a moment ago is the one being bought).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from facet.contracts import BehaviourEvent
from facet.evaluation.split import Split, TestCase, timed_sequences
from facet.model.features import FeatureSpace, ItemCatalogue

DAY_SECONDS = 86_400.0


@dataclass
class LaunchSplit:
    #: ``train``: each shopper's steps before the cutoff; ``tests``: every step after it that has a
    #: history, flagged ``cold_item`` when its item is new.
    split: Split
    cutoff: float
    #: bool [N]: first seen at or after the cutoff (never in the training data).
    new_items: np.ndarray
    #: float [N]: when each item was first touched (epoch seconds).
    first_seen: np.ndarray
    #: region → (times, items) of every step in that region, sorted by time: what a regional
    #: recommender sees streaming past, for the launch trend.
    interactions: dict[str, tuple[np.ndarray, np.ndarray]]

    @property
    def cold_cases(self) -> list[TestCase]:
        return [case for case in self.split.tests if case.cold_item]

    def warm_sample(self, size: int, seed: int = 0) -> list[TestCase]:
        """``size`` warm cases drawn without replacement (all of them when there are fewer)."""
        warm = [case for case in self.split.tests if not case.cold_item]
        rows = np.random.default_rng(seed).permutation(len(warm))[:size]
        return [warm[i] for i in sorted(rows)]

    def recent_interactions(self, cases: Sequence[TestCase], window: float = DAY_SECONDS) -> np.ndarray:
        """float32 [len(cases), N]: each item's steps in the case's region during the ``window`` seconds
        strictly before the case (what the region's recommender has seen by then; never the case)."""
        counts = np.zeros((len(cases), len(self.split.catalogue)), dtype=np.float32)
        for row, case in enumerate(cases):
            times, items = self.interactions.get(case.region, (np.zeros(0), np.zeros(0, dtype=np.int64)))
            start, stop = np.searchsorted(times, [case.occurred_at - window, case.occurred_at], side="left")
            np.add.at(counts[row], items[start:stop], 1.0)
        return counts


def launch_split(events: Iterable[BehaviourEvent], space: FeatureSpace | None = None, *,
                 test_share: float = 0.2) -> LaunchSplit:
    """Cut at the time that leaves ``test_share`` of the steps after it."""
    if not 0 < test_share < 1:
        raise ValueError("test_share must be between 0 and 1")
    catalogue = ItemCatalogue(space or FeatureSpace())
    sequences = timed_sequences(events, catalogue)
    all_times = np.fromiter((t for s in sequences.values() for t in s.times), dtype=np.float64)
    if not all_times.size:
        raise ValueError("no events to split")
    cutoff = float(np.quantile(all_times, 1 - test_share))
    split = Split(catalogue)
    first_seen = np.full(len(catalogue), np.inf)
    by_region: dict[str, list[tuple[float, int]]] = {}
    for shopper, sequence in sequences.items():
        before = [item for item, time in zip(sequence.items, sequence.times, strict=True) if time < cutoff]
        if before:
            split.train[shopper] = (sequence.region, before)
        steps = by_region.setdefault(sequence.region, [])
        for item, time in zip(sequence.items, sequence.times, strict=True):
            first_seen[item] = min(first_seen[item], time)
            steps.append((time, item))
    new_items = first_seen >= cutoff
    for shopper, sequence in sequences.items():
        for position in range(1, len(sequence.items)):
            time = sequence.times[position]
            if time >= cutoff:
                target = sequence.items[position]
                split.tests.append(TestCase(shopper, sequence.region, tuple(sequence.items[:position]), target,
                                            bool(new_items[target]), time))
    interactions = {}
    for region, steps in by_region.items():
        steps.sort()
        interactions[region] = (np.asarray([t for t, _ in steps]), np.asarray([i for _, i in steps], dtype=np.int64))
    return LaunchSplit(split, cutoff, new_items, first_seen, interactions)
