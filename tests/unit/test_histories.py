"""ShopperHistories: recent items per shopper, repeats collapsed, bounded in shoppers and length."""

from __future__ import annotations

import pytest
from facet.model.histories import ShopperHistories


def test_histories_collapse_repeats_and_keep_the_last_items() -> None:
    histories = ShopperHistories(max_shoppers=10, length=3)
    first = histories.record("a", 1)
    assert first.previous == () and not first.is_next_item
    assert not histories.record("a", 1).is_next_item  # view → cart of one item is one step
    recorded = histories.record("a", 2)
    assert recorded.previous == (1,) and recorded.is_next_item
    for item in (3, 4):
        histories.record("a", item)
    assert histories.items_of("a") == [2, 3, 4]
    assert histories.items_of("unknown") == []


def test_the_least_recently_seen_shopper_is_evicted() -> None:
    histories = ShopperHistories(max_shoppers=2, length=5)
    histories.record("a", 1)
    histories.record("b", 1)
    histories.record("a", 2)  # a is now the most recent
    assert histories.record("c", 1).evicted == "b"
    assert len(histories) == 2 and "b" not in histories and "a" in histories
    assert histories.record("b", 3).previous == ()  # an evicted shopper starts again


def test_a_store_needs_room() -> None:
    with pytest.raises(ValueError):
        ShopperHistories(max_shoppers=0, length=3)
