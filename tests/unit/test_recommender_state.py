from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import torch
from facet.contracts import BehaviourEvent, EventType, ItemAttributes
from facet.model.network import new_model
from facet.model.training import catalogue_tensors
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_recommender.state import RegionalState

from tests.helpers import TINY_MODEL


@pytest.fixture
def state() -> RegionalState:
    regional = RegionalState(TINY_MODEL, "eu", max_shoppers=50, max_purchases=10, max_items=10_000,
                             trend_half_life=500)
    for event in JewelryWorkload(WorkloadConfig(sessions=300, seed=4, regions=("eu",))).events():
        regional.observe(event)
    regional.load_model(new_model(TINY_MODEL).state_dict(), version=3)
    return regional


def _flat_model(state: RegionalState) -> None:
    """A model with no opinion at all (every weight zero): the regional trend must decide."""
    state.load_model({k: v.zero_() for k, v in new_model(TINY_MODEL).state_dict().items()}, version=4)


def test_no_model_means_no_answer() -> None:
    regional = RegionalState(TINY_MODEL, "eu", max_shoppers=5, max_purchases=5, max_items=10, trend_half_life=10)
    with pytest.raises(LookupError):
        regional.recommend([], 5, set(), 1.0)


def test_cold_shopper_gets_regional_trends(state: RegionalState) -> None:
    _flat_model(state)
    serving, ranked, strategy = state.recommend([], 10, set(), trend_weight=1.0)
    assert serving.version == 4 and strategy == "cold_start" and len(ranked) == 10
    trend = state.trend_scores(len(state.catalogue))
    top_trending = {state.catalogue.item_ids[i] for i in trend.argsort()[-30:]}
    assert {item for item, _ in ranked} <= top_trending


def test_bought_items_are_left_out_and_memory_is_bounded(state: RegionalState) -> None:
    buyer = next(s for s, bought in state.purchases.items() if bought)
    bought = state.purchases[buyer]
    _serving, ranked, _ = state.recommend(state.histories.items_of(buyer), 50, set(bought), trend_weight=1.0)
    ids = {state.catalogue.index[item] for item, _ in ranked}
    assert not ids & bought
    assert len(state.histories) <= 50


def test_a_brand_new_item_can_be_recommended_at_once(state: RegionalState) -> None:
    before = len(state.catalogue)
    position = state.announce_item("brand-new-ring", ItemAttributes(category="ring", metal="gold"), 300.0, "EUR")
    assert position == before
    _serving, ranked, _ = state.recommend([], len(state.catalogue), set(), trend_weight=0.0)
    assert "brand-new-ring" in {item for item, _ in ranked}
    assert state.current() is not None and state.current().items == before + 1  # type: ignore[union-attr]


def test_purchase_events_feed_exclusions() -> None:
    regional = RegionalState(TINY_MODEL, "eu", max_shoppers=5, max_purchases=5, max_items=100, trend_half_life=10)
    events = [e for e in JewelryWorkload(WorkloadConfig(sessions=200, seed=5, regions=("eu",))).events()
              if e.event_type is EventType.PURCHASE][:3]
    for event in events:
        regional.observe(event)
    assert sum(len(b) for b in regional.purchases.values()) == 3


def test_announcements_respect_the_catalogue_cap() -> None:
    from facet.service.announcements import CatalogueFull

    regional = RegionalState(TINY_MODEL, "eu", max_shoppers=5, max_purchases=5, max_items=3, trend_half_life=10)
    for index in range(3):
        regional.announce_item(f"new-{index}", ItemAttributes(category="ring"), None, None)
    regional.announce_item("new-0", ItemAttributes(category="ring", metal="gold"), None, None)  # an update is fine
    with pytest.raises(CatalogueFull):
        regional.announce_item("junk", ItemAttributes(category="ring"), None, None)
    assert len(regional.catalogue) == 3


def test_a_shopper_is_visible_only_to_their_own_storefront(state: RegionalState) -> None:
    shopper, storefront = next((s, f) for s, f in state.storefronts.items() if len(state.histories.items_of(s)) >= 2)
    history, _ = state.shopper_view(shopper, storefront)
    assert history == state.histories.items_of(shopper)
    assert state.shopper_view(shopper, "someone-else") == ([], set())
    assert state.shopper_view(shopper, None) == ([], set())
    assert state.shopper_view("never-seen", storefront) == ([], set())


def test_items_the_model_never_trained_get_the_cold_start_policy(state: RegionalState) -> None:
    used = set(state.catalogue.arrays()[0].tolist())
    item_id = next(f"new-pendant-{k}" for k in range(10_000) if state.space.item_bucket(f"new-pendant-{k}") not in used)
    bucket = state.space.item_bucket(item_id)
    parameters = new_model(TINY_MODEL).state_dict()
    parameters["item_id.weight"] = torch.randn_like(parameters["item_id.weight"])
    parameters["item_id.weight"][bucket] = 0  # the federation has never trained this row
    state.load_model(parameters, version=5)

    def new_items() -> list[str]:
        serving = state.current()
        assert serving is not None
        return [state.catalogue.item_ids[i] for i in np.flatnonzero(serving.ready.cold.numpy())]

    assert new_items() == []
    state.announce_item(item_id, ItemAttributes(category="pendant", metal="gold"), 250.0, "EUR")
    assert new_items() == [item_id]
    history = state.histories.items_of(next(iter(state.storefronts)))
    position = state.catalogue.index[item_id]
    serving = state.current()
    assert serving is not None
    with_policy = serving.ready.rank([history], [state.region_bucket])[0]
    plain = serving.model.rank(catalogue_tensors(state.catalogue), [history], [state.region_bucket])[0]
    # Its rows are its neighbours' (not the empty ones) and the offset lifts it; warm items are untouched.
    assert float(with_policy[position]) != pytest.approx(float(plain[position]) + state.cold_start.cold_offset)
    assert torch.allclose(with_policy[:position], plain[:position], atol=1e-5)
    # Shoppers taking to the launch raise it further (the launch trend), before any model has learned it.
    before = float(state._scores(serving, history)[position])
    for k in range(5):
        state.observe(BehaviourEvent(occurred_at=datetime.now(UTC), region="eu", storefront="eu-web",
                                     shopper_id=f"fan-{k}", session_id="s", item_id=item_id,
                                     event_type=EventType.VIEW))
    assert float(state._scores(state.current(), history)[position]) > before  # type: ignore[arg-type]


def test_a_launch_slot_serves_an_announced_item_at_the_bottom_of_the_list() -> None:
    from facet.model.coldstart import ColdStartPolicy

    def served(policy: ColdStartPolicy) -> list[str]:
        regional = RegionalState(TINY_MODEL, "eu", max_shoppers=50, max_purchases=10, max_items=10_000,
                                 trend_half_life=500, cold_start=policy)
        for event in JewelryWorkload(WorkloadConfig(sessions=300, seed=4, regions=("eu",))).events():
            regional.observe(event)
        used = set(regional.catalogue.arrays()[0].tolist())
        launch = next(f"launch-{k}" for k in range(10_000) if regional.space.item_bucket(f"launch-{k}") not in used)
        parameters = new_model(TINY_MODEL, seed=1).state_dict()
        parameters["item_id.weight"] = torch.randn_like(parameters["item_id.weight"])
        parameters["item_id.weight"][regional.space.item_bucket(launch)] = 0  # never trained: a launch
        regional.load_model(parameters, version=3)
        regional.announce_item(launch, ItemAttributes(category="ring", metal="platinum"), 900.0, "EUR")
        history = regional.histories.items_of(next(iter(regional.storefronts)))
        _serving, ranked, _strategy = regional.recommend(history, 5, set(), trend_weight=0.0)
        return ["launch" if item.startswith("launch-") else item for item, _score in ranked]

    torch.manual_seed(0)
    without = served(ColdStartPolicy(cold_offset=-20.0, trend_weight=0.0))  # the launch ranked last
    torch.manual_seed(0)
    with_slot = served(ColdStartPolicy(cold_offset=-20.0, trend_weight=0.0, launch_slots=1,
                                          launch_slot_margin=100.0))
    assert "launch" not in without
    assert with_slot[:4] == without[:4] and with_slot[4] == "launch"
