"""Insights math: lifts, similarity, opportunities, what is rising, and the product feed."""

from __future__ import annotations

import numpy as np
import pytest
from facet.contracts import ItemAttributes, ProductRecord
from facet.insights.history import DemandHistory, Snapshot
from facet.insights.lifts import field_lifts, taste_similarity
from facet.insights.opportunities import opportunities
from facet.insights.products import ProductFacts, read_feed
from facet.insights.trends import rising
from facet.model.network import ModelConfig


def _products() -> ProductFacts:
    products = ProductFacts()
    for i in range(40):
        products.add(f"sku-{i}", ItemAttributes(metal="gold" if i % 2 else "silver",
                                                category=("ring", "earring", "pendant", "brooch")[i % 4]),
                     price=50.0 * (1 + i % 5), currency="USD")
    return products


def _demand(weights: list[np.ndarray]) -> np.ndarray:
    return np.stack([w / w.sum() for w in weights])


def test_lifts_recover_a_planted_preference_and_similarity_groups_alike_markets() -> None:
    products = _products()
    gold = np.array([v == "gold" for v in products.values["metal"]])
    rings = np.array([v == "ring" for v in products.values["category"]])
    demand = _demand([1 + 2.0 * gold, 1 + 1.8 * gold, 1 + 2.0 * rings])
    lifts = field_lifts(demand, products)
    metal = lifts["metal"]
    gold_column = metal.values.index("gold")
    assert metal.lifts[0, gold_column] > 1.2 and metal.lifts[2, gold_column] < 0.8
    assert np.allclose(metal.shares.sum(axis=1), 1.0)
    similarity = taste_similarity(lifts)
    assert np.allclose(np.diag(similarity), 1.0) and np.allclose(similarity, similarity.T)
    assert similarity[0, 1] > 0.9 > similarity[0, 2]
    assert products.codes("price_band")[0] == sorted(products.codes("price_band")[0],
                                                     key=lambda v: int(v.split(":")[1]))


def test_opportunities_leave_out_what_the_target_already_buys_and_rank_by_its_demand() -> None:
    source, target = np.ones(100), np.linspace(1.0, 1.5, 100)
    source[:10] = 50   # ten pieces the source loves
    target[0] = 400    # one of them the target already buys most
    target[10:19] = 9  # and nine other pieces it already buys a lot: its established ten
    target[5] = 4      # the one it is most likely to take to
    demand = _demand([source, target])
    found = opportunities(demand, 0, 1, k=5)
    items = [o.item for o in found]
    assert 0 not in items and items[0] == 5
    assert all(i < 10 for i in items)
    assert found[0].expected_lift == pytest.approx(demand[1, 5] * 100)


def test_rising_finds_what_grew_and_history_keeps_hourly_snapshots() -> None:
    before, now = np.full(5, 0.2), np.array([0.1, 0.1, 0.5, 0.2, 0.1])
    assert [r.index for r in rising(before, now)] == [2]
    history = DemandHistory(recent=2, spacing_s=3600)
    for hour in range(30):
        for minute in (0, 30):
            history.add(Snapshot(hour * 2 + minute // 30, 0, hour * 3600 + minute * 60, np.ones((1, 3))))
    assert len(history.recent_snapshots()) == 2
    day_ago = history.at_or_before(history.latest.at - 86_400)  # type: ignore[union-attr]
    assert day_ago is not None and history.latest.at - day_ago.at == pytest.approx(86_400, abs=3600)  # type: ignore[union-attr]
    assert history.at_or_before(-1e9) is not None  # short history: the oldest kept


def test_every_configured_region_has_its_own_embedding_row() -> None:
    config = ModelConfig()
    space = config.feature_space()
    rows = [space.region_bucket(r) for r in config.regions]
    assert len(set(rows)) == len(rows) == 7
    assert len(config.regions) <= space.region_bucket("somewhere-else") < config.region_buckets
    wider = config.with_regions(["germany", "us"])
    assert wider.feature_space().region_bucket("germany") == 7
    with pytest.raises(ValueError):
        ModelConfig(region_buckets=4)


def test_the_product_feed_refuses_bad_lines_without_stopping() -> None:
    good = ProductRecord(item_id="a-1", attributes=ItemAttributes(metal="gold")).model_dump_json().encode()
    lines = [good, b"{not json", b'{"item_id": "x y", "attributes": {}}', b"", b"x" * 20_000, good]
    results = list(read_feed(lines))
    assert [r if isinstance(r, str) else "ok" for r in results] == ["ok", "invalid", "invalid", "oversize", "ok"]
