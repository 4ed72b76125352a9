"""Event freshness: each event counted once, at the first broadcast that includes its update, in bounded memory."""

from __future__ import annotations

import numpy as np
from facet_trainer.freshness import FreshnessTracker


def test_each_event_is_timed_once_from_its_acceptance_to_the_first_broadcast_that_includes_it() -> None:
    tracker = FreshnessTracker()
    for accepted in (100.0, 101.0, 102.0):
        tracker.covered(accepted)
    assert tracker.sent("u1") == 0
    tracker.covered(110.0)
    tracker.sent("u2")
    assert tracker.served(("other",), now=120.0).size == 0  # a broadcast of somebody else's updates
    assert sorted(tracker.served(("u1",), now=120.0).tolist()) == [18.0, 19.0, 20.0]
    assert tracker.served(("u1", "u2"), now=130.0).tolist() == [20.0]  # u1's events were served already
    assert tracker.served(("u2",), now=140.0).size == 0


def test_memory_is_bounded_and_a_long_update_keeps_an_unbiased_sample() -> None:
    tracker = FreshnessTracker(max_updates=2, max_events=1_000, seed=1)
    for accepted in np.linspace(0.0, 100.0, 20_000):
        tracker.covered(float(accepted))
    assert tracker.sent("big") == 0
    waits = tracker.served(("big",), now=100.0)
    assert waits.size == 1_000
    assert abs(float(np.median(waits)) - 50.0) < 5.0  # a reservoir, not the first thousand (median 99.75)
    for name in ("a", "b"):
        tracker.covered(1.0)
        tracker.sent(name)
    tracker.covered(1.0)
    assert tracker.sent("c") == 1  # "a" was never broadcast: forgotten to make room
    assert tracker.served(("a", "b", "c"), now=2.0).size == 2
