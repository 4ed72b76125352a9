"""The main job's closing figures: event freshness from the trainers' histograms, and the federated model
against a centralized one trained on the same events."""

from __future__ import annotations

import pytest
import torch
from facet.contracts import EventType
from facet_lab.system.live_eval import LiveEvaluator, federated_vs_centralized
from facet_lab.system.run import freshness_by_region
from facet_lab.system.scrape import Scrape, histogram_quantile

from tests.helpers import TINY_MODEL
from tests.unit.test_contracts import make_event


def test_quantiles_interpolate_inside_their_bucket_as_prometheus_does() -> None:
    buckets = [(1.0, 10.0), (5.0, 30.0), (10.0, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(buckets, 0.25) == pytest.approx(1.0)
    assert histogram_quantile(buckets, 0.5) == pytest.approx(3.0)  # 20th of 40: halfway through (1, 5]
    assert histogram_quantile(buckets, 0.95) == pytest.approx(9.0)  # 38th: 8 of the 10 in (5, 10]
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 4.0)], 0.5) == 1.0  # beyond the last bound


def test_a_regions_replicas_add_up_before_its_quantiles_are_taken() -> None:
    name = "facet_trainer_event_freshness_seconds_bucket"
    samples = [(name, {"region": "us", "le": le}, count) for le, count in (("5.0", 10.0), ("+Inf", 10.0))]
    samples += [(name, {"region": "us", "le": le}, count) for le, count in (("5.0", 0.0), ("+Inf", 10.0))]
    samples += [(name, {"region": "eu", "le": le}, count) for le, count in (("5.0", 4.0), ("+Inf", 4.0))]
    result = freshness_by_region(Scrape(samples))
    assert result["us"]["events"] == 20 and result["us"]["p50"] == pytest.approx(5.0)
    assert result["eu"]["p50"] == pytest.approx(2.5)


def test_the_comparison_weights_regions_by_their_cases_and_says_when_there_is_no_ratio() -> None:
    federated = {"us": {"ndcg10": 0.2, "cases": 300.0}, "jp": {"ndcg10": 0.1, "cases": 100.0},
                 "eu": {"ndcg10": 0.3, "cases": 50.0}}
    centralized = {"us": {"ndcg10": 0.25, "cases": 300.0}, "jp": {"ndcg10": 0.0, "cases": 100.0}}
    result = federated_vs_centralized(federated, centralized, version=3, training_seconds=1.0, epochs=2)
    assert set(result["regions"]) == {"us", "jp"}  # only regions both could score
    assert result["regions"]["us"]["ratio"] == pytest.approx(0.8)
    assert result["regions"]["jp"]["ratio"] is None
    assert result["overall"]["federated"] == pytest.approx((0.2 * 300 + 0.1 * 100) / 400)
    assert result["overall"]["ratio"] == pytest.approx(0.175 / 0.1875)


def test_the_centralized_model_trains_on_what_was_sent_and_never_on_a_held_out_case() -> None:
    evaluator = LiveEvaluator(TINY_MODEL)
    for shopper, region in (("a", "us"), ("b", "jp")):
        for item in ("sku-1", "sku-2", "sku-3"):
            evaluator.sent(make_event(shopper_id=shopper, region=region, item_id=item,
                                      event_type=EventType.VIEW))
    evaluator.hold_out(make_event(shopper_id="a", region="us", item_id="sku-9", event_type=EventType.VIEW))
    assert evaluator.shopper_region == {"a": "us", "b": "jp"}
    held_out = evaluator.catalogue.index["sku-9"]
    assert evaluator.history["a"] == [0, 1, 2] and all(held_out not in h for h in evaluator.history.values())
    before = {name: t.clone() for name, t in evaluator.train_centralized(epochs=0).state_dict().items()}
    trained = evaluator.train_centralized(epochs=2).state_dict()
    assert any(not torch.equal(before[name], trained[name]) for name in before)  # it did learn from them
