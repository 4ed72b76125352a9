"""Time to warm in the live run: launched items' held-out steps, bucketed by how much the item was seen."""

from __future__ import annotations

import numpy as np
from facet_lab.system.launches import LaunchTracker


def test_launched_items_are_bucketed_by_events_seen_and_compared_with_warm_items() -> None:
    tracker = LaunchTracker(is_launch=lambda item_id: item_id.startswith("new"))
    tracker.sent(0, "old")
    for _ in range(30):  # warm steps: always ranked first
        tracker.held_out((0,), 0, "old", "us")
    for _ in range(12):  # a launch's first 12 steps, each after one more event of it
        tracker.held_out((0,), 1, "new-ring", "us")
        tracker.sent(1, "new-ring")
    steps = tracker.take_pending(catalogue_size=2)
    assert len(steps) == 42 and not tracker.pending

    def rank(histories: object, region: str, targets: np.ndarray) -> np.ndarray:
        return targets.astype(float)  # item i ranks i-th: items 0 and 1 are in the top 10

    # Item 0 ranks first, item 1 second: both in the top 10, so steps to them are hits...
    tracker.score(steps, rank)
    summary = tracker.summary()
    assert summary["launched_items"] == 1 and summary["hr10_warm"] == 1.0 and summary["hr10_launched"] == 1.0
    counts = {row["from"]: row["steps"] for row in summary["hr10_by_events_before"]}
    assert counts == {0: 1, 1: 4, 5: 7, 20: 0, 50: 0}
    assert summary["events_to_warm"] is None  # no bucket has the 10 steps it takes to count


def test_a_launch_counts_as_warm_from_the_first_bucket_that_matches_warm_items() -> None:
    tracker = LaunchTracker(is_launch=lambda item_id: item_id == "new")
    tracker.sent(0, "old")
    for _ in range(20):
        tracker.held_out((0,), 0, "old", "us")
    for _ in range(60):
        tracker.held_out((0,), 5, "new", "us")
        tracker.sent(5, "new")
    steps = tracker.take_pending(catalogue_size=6)
    seen_before = {id(s): s.events_before for s in steps}

    def rank(histories: object, region: str, targets: np.ndarray) -> np.ndarray:
        return np.full(len(targets), 14.5)  # a miss

    # Every launch step a miss until the launch was seen 20 times, a hit from then on (as are warm steps).
    tracker.score([s for s in steps if s.launched and seen_before[id(s)] < 20], rank)
    tracker.score([s for s in steps if not s.launched or seen_before[id(s)] >= 20],
                  lambda h, r, targets: np.zeros(len(targets)))
    summary = tracker.summary()
    assert summary["hr10_warm"] == 1.0
    assert summary["events_to_warm"] == 20.0
