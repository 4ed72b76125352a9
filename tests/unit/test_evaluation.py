from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from facet.contracts import BehaviourEvent
from facet.evaluation.metrics import hit_rate, ndcg, target_ranks
from facet.evaluation.scoring import ranks_for
from facet.evaluation.split import leave_last_out
from facet_lab.baselines import last_item_cooccurrence, popularity


def test_ranks_count_ties_as_half() -> None:
    scores = np.asarray([[3.0, 1.0, 1.0, 1.0], [0.0, 5.0, 4.0, 6.0]])
    ranks = target_ranks(scores, np.asarray([1, 2]))
    assert ranks.tolist() == [2.0, 2.0]  # 1 better + 2 ties / 2; two better


def test_ndcg_and_hit_rate_on_known_ranks() -> None:
    ranks = np.asarray([0.0, 1.0, 9.0, 10.0])
    assert hit_rate(ranks) == 0.75
    assert ndcg(ranks) == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4)


def _events(sequences: dict[str, list[str]]) -> list[BehaviourEvent]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        BehaviourEvent(occurred_at=start + timedelta(minutes=i), region="eu", storefront="s", shopper_id=shopper,
                       session_id="x", item_id=item, event_type="view")
        for shopper, items in sequences.items() for i, item in enumerate(items)
    ]


def test_leave_last_out_holds_out_the_last_item_and_flags_cold_items() -> None:
    split = leave_last_out(_events({"a": ["r1", "r2", "r3"], "b": ["r1", "r1"], "c": ["r2", "new"],
                                    "d": ["r3", "r1", "r2"]}))
    by_shopper = {t.shopper: t for t in split.tests}
    assert set(by_shopper) == {"a", "c", "d"}  # b has one distinct item
    assert split.catalogue.item_ids[by_shopper["a"].target] == "r3"
    assert by_shopper["c"].cold_item and not by_shopper["a"].cold_item
    assert split.train["b"][1] == [split.catalogue.index["r1"]]  # consecutive repeats collapse


def test_last_item_cooccurrence_beats_popularity_on_sequential_data() -> None:
    sequences = {f"t{i}": ["a", "b", "z"] for i in range(10)}  # a → b seen in training
    sequences.update({f"u{i}": ["y", "a", "b"] for i in range(10)})  # held out: b right after a
    sequences.update({f"f{i}": ["e", "g", "e", "g", "e"] for i in range(10)})  # popular, unrelated items
    split = leave_last_out(_events(sequences))
    sequential = ranks_for(last_item_cooccurrence(split), split.tests)
    popular = ranks_for(popularity(split), split.tests)
    assert ndcg(sequential) > ndcg(popular)
