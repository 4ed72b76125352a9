from __future__ import annotations

import pytest
from facet.contracts import EventType, ItemAttributes
from facet.model.network import new_model
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
    from facet_recommender.state import CatalogueFull

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
