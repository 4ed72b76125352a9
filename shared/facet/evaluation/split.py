"""Time-ordered leave-last-out split of an event stream into training sequences and test cases."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from facet.contracts import BehaviourEvent
from facet.model.features import FeatureSpace, ItemCatalogue


@dataclass(frozen=True)
class TestCase:
    shopper: str
    region: str
    history: tuple[int, ...]
    target: int
    cold_item: bool
    #: When the target happened (epoch seconds); 0 where the split does not keep time.
    occurred_at: float = 0.0

    @property
    def prior_events(self) -> int:
        return len(self.history)


@dataclass
class Split:
    catalogue: ItemCatalogue
    #: Training sequences: shopper → (region, item indices in time order).
    train: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    tests: list[TestCase] = field(default_factory=list)

    @property
    def regions(self) -> list[str]:
        counts: dict[str, int] = {}
        for region, items in self.train.values():
            counts[region] = counts.get(region, 0) + len(items)
        return sorted(counts, key=lambda r: -counts[r])


@dataclass(frozen=True)
class TimedSequence:
    region: str
    items: list[int]
    #: When each item was touched (epoch seconds), parallel to ``items``.
    times: list[float]


def timed_sequences(events: Iterable[BehaviourEvent], catalogue: ItemCatalogue) -> dict[str, TimedSequence]:
    """Each shopper's items in time order with their times, consecutive repeats collapsed (view → cart →
    buy is one step, timed by its first event)."""
    rows: list[tuple[float, int, str, str, int]] = []
    for order, event in enumerate(events):
        index = catalogue.add_event(event)
        rows.append((event.occurred_at.timestamp(), order, event.shopper_id, event.region, index))
    rows.sort()
    sequences: dict[str, TimedSequence] = {}
    for time, _order, shopper, region, index in rows:
        entry = sequences.get(shopper)
        if entry is None:
            entry = sequences[shopper] = TimedSequence(region, [], [])
        if not entry.items or entry.items[-1] != index:
            entry.items.append(index)
            entry.times.append(time)
    return sequences


def sequences_by_shopper(
    events: Iterable[BehaviourEvent], catalogue: ItemCatalogue
) -> dict[str, tuple[str, list[int]]]:
    """Each shopper's items in time order, consecutive repeats collapsed (view→cart→buy is one step)."""
    return {shopper: (s.region, s.items) for shopper, s in timed_sequences(events, catalogue).items()}


def leave_last_out(
    events: Iterable[BehaviourEvent], space: FeatureSpace | None = None, min_distinct_items: int = 2
) -> Split:
    """Hold out each eligible shopper's last item; everything before it is training data."""
    catalogue = ItemCatalogue(space or FeatureSpace())
    split = Split(catalogue)
    held_out: list[tuple[str, str, list[int], int]] = []
    for shopper, (region, items) in sequences_by_shopper(events, catalogue).items():
        if len(set(items)) >= min_distinct_items and len(items) >= 2:
            split.train[shopper] = (region, items[:-1])
            held_out.append((shopper, region, items[:-1], items[-1]))
        else:
            split.train[shopper] = (region, items)
    seen = {item for _region, items in split.train.values() for item in items}
    split.tests = [
        TestCase(shopper, region, tuple(history), target, target not in seen)
        for shopper, region, history, target in held_out
    ]
    return split
