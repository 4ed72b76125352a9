"""Time to warm in the live run: how many events and seconds a launched item needs before the served
model recommends it as well as warm items.

Each held-out step whose item launched during the run is scored with the newest model at the next
evaluation (at most one evaluation interval late), remembering how many events of that item had been
sent and how long ago its first one was; held-out steps to warm items, scored the same way, are the
yardstick."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from facet.evaluation.metrics import K

#: Buckets of "events of the item sent before this step" and "seconds since its first event".
EVENT_EDGES = (0, 1, 5, 20, 50)
SECOND_EDGES = (0, 30, 60, 120, 300)
#: A bucket needs this many scored steps before its HR@10 counts.
MIN_CASES = 10

#: (histories, region, targets) → each target's 0-based rank as served.
RankFunction = Callable[[Sequence[Sequence[int]], str, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class PendingStep:
    history: tuple[int, ...]
    target: int
    region: str
    launched: bool
    events_before: int
    seconds_since_first: float


@dataclass
class LaunchTracker:
    """Fed on the producer's event loop (``sent``/``held_out``); scored in the evaluation thread."""

    is_launch: Callable[[str], bool]
    first_sent: dict[int, float] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)
    pending: list[PendingStep] = field(default_factory=list)
    #: (launched, events before, seconds since first, hit in the top 10)
    scored: list[tuple[bool, int, float, bool]] = field(default_factory=list)
    _launched: set[int] = field(default_factory=set)

    def sent(self, item: int, item_id: str) -> None:
        if item not in self.first_sent:
            self.first_sent[item] = time.monotonic()
            if self.is_launch(item_id):
                self._launched.add(item)
        self.events[item] = self.events.get(item, 0) + 1

    def held_out(self, history: tuple[int, ...], item: int, item_id: str, region: str) -> None:
        if item not in self.first_sent and self.is_launch(item_id):
            self._launched.add(item)
        first = self.first_sent.get(item)
        self.pending.append(PendingStep(history, item, region, item in self._launched, self.events.get(item, 0),
                                        0.0 if first is None else time.monotonic() - first))

    def take_pending(self, catalogue_size: int) -> list[PendingStep]:
        """The steps to score now (on the event loop, so the thread never races the producer)."""
        ready = [step for step in self.pending if step.target < catalogue_size]
        self.pending = [step for step in self.pending if step.target >= catalogue_size]
        return ready

    def score(self, steps: Sequence[PendingStep], rank: RankFunction) -> None:
        by_region: dict[str, list[PendingStep]] = {}
        for step in steps:
            by_region.setdefault(step.region, []).append(step)
        for region, group in by_region.items():
            ranks = rank([s.history for s in group], region, np.asarray([s.target for s in group]))
            for step, position in zip(group, ranks.tolist(), strict=True):
                self.scored.append((step.launched, step.events_before, step.seconds_since_first, position < K))

    def summary(self) -> dict[str, Any]:
        warm = [hit for launched, _e, _s, hit in self.scored if not launched]
        launched = [(e, s, hit) for was, e, s, hit in self.scored if was]
        warm_hr = float(np.mean(warm)) if warm else None
        by_events = _buckets([(e, hit) for e, _s, hit in launched], EVENT_EDGES)
        by_seconds = _buckets([(s, hit) for _e, s, hit in launched], SECOND_EDGES)
        return {
            "launched_items": len(self._launched),
            "launch_steps_scored": len(launched),
            "warm_steps_scored": len(warm),
            "hr10_warm": warm_hr,
            "hr10_launched": float(np.mean([hit for _e, _s, hit in launched])) if launched else None,
            "hr10_by_events_before": by_events,
            "hr10_by_seconds_since_launch": by_seconds,
            "events_to_warm": _first_warm(by_events, warm_hr),
            "seconds_to_warm": _first_warm(by_seconds, warm_hr),
        }


def _buckets(values: list[tuple[float, bool]], edges: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for low, high in zip(edges, [*edges[1:], float("inf")], strict=True):
        hits = [hit for value, hit in values if low <= value < high]
        rows.append({"from": low, "to": high, "steps": len(hits), "hr10": float(np.mean(hits)) if hits else None})
    return rows


def _first_warm(rows: list[dict[str, Any]], warm_hr: float | None) -> float | None:
    """The lower edge of the first bucket (with enough steps) whose HR@10 reaches the warm items'."""
    if warm_hr is None:
        return None
    for row in rows:
        if row["steps"] >= MIN_CASES and row["hr10"] is not None and row["hr10"] >= warm_hr:
            return float(row["from"])
    return None
