"""The real-data readers; skipped where ../shared/data is absent."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest
from facet.data.readers import read_jewelry, read_retail

from tests.conftest import require_data_file

pytestmark = pytest.mark.data


def test_jewelry_reader_handles_both_layouts_and_duplicates() -> None:
    path = require_data_file("jewelry_purchases.csv.gz")
    events = list(read_jewelry(path))
    assert 90_000 < len(events) < 95_911  # 2,589 exact duplicate rows dropped
    assert len({e.event_id for e in events}) > 0.9 * len(events)
    prices = [e.price for e in events if e.price is not None]
    assert max(prices) < 40_000  # an 11-field row read as 13 fields would shift prices into categories
    regions = Counter(e.region for e in events)
    assert len(regions) == 7 and regions.most_common(1)[0][1] < 0.5 * len(events)


def test_jewelry_taste_split_is_non_iid_and_hash_split_is_not() -> None:
    path = require_data_file("jewelry_purchases.csv.gz")

    def diamond_share(split: str) -> dict[str, float]:
        totals: Counter[str] = Counter()
        diamonds: Counter[str] = Counter()
        for event in islice(read_jewelry(path, split=split), 30_000):  # type: ignore[arg-type]
            totals[event.region] += 1
            diamonds[event.region] += bool(event.attributes and event.attributes.gem == "diamond")
        return {r: diamonds[r] / totals[r] for r in totals if totals[r] > 300}

    taste, hashed = diamond_share("taste"), diamond_share("hash")
    assert max(taste.values()) - min(taste.values()) > 3 * (max(hashed.values()) - min(hashed.values()))


def test_retail_reader_drops_cancellations_and_anonymous_rows() -> None:
    path = require_data_file("online_retail.csv.gz")
    events = list(islice(read_retail(path), 50_000))
    assert all(not e.session_id.startswith("iC") for e in events)
    assert all(e.shopper_id != "c" for e in events)
    regions = Counter(e.region for e in events)
    assert regions.most_common(1)[0][0] == "united-kingdom"
