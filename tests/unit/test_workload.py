"""The synthetic workload: returning shoppers are drawn in proportion to their activity."""

from __future__ import annotations

from collections import Counter

import numpy as np
from facet.workload.catalogue import default_regions
from facet.workload.generator import JewelryWorkload, WorkloadConfig, _RegionState, _Shopper


def _shopper(name: str, activity: float) -> _Shopper:
    return _Shopper(shopper_id=name, region=0, favourite_category=0, favourite_metal=0, device="mobile",
                    activity=activity)


def test_a_returning_shopper_is_drawn_in_proportion_to_activity() -> None:
    state = _RegionState(default_regions()[0])
    for index in range(600):  # past the first room of 256, so the running sums have grown
        state.add_shopper(_shopper(f"s{index}", 3.0 if index == 599 else 1.0))
    total = 602.0
    assert state.returning_shopper(0.0).shopper_id == "s0"
    assert state.returning_shopper(598.5 / total).shopper_id == "s598"
    assert state.returning_shopper(599.5 / total).shopper_id == "s599"  # the last holds 3 of 602
    draws = Counter(state.returning_shopper(u).shopper_id for u in np.random.default_rng(0).random(20_000))
    assert 70 < draws["s599"] < 130  # 3/602 of 20,000: 100, against 33 for each of the others


def test_the_same_seed_gives_the_same_events() -> None:
    def events() -> list[tuple[str, str | None]]:
        return [(e.shopper_id, e.item_id) for e in JewelryWorkload(WorkloadConfig(sessions=300, seed=3)).events()]

    first = events()
    assert first == events() and len({shopper for shopper, _item in first}) < 300  # shoppers do return
