"""Noisy interest counts: one shopper's bounded contribution, the trainer's window, the release a receiver
checks, the signatures that carry it across, and the counts the insights service keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import zstandard
from facet.contracts import BehaviourEvent, EventType, ItemAttributes, ModelUpdate, RegionalStatistics
from facet.errors import PoisonMessageError
from facet.federation.model_signing import ModelSigner, ModelVerifier, generate_keypair
from facet.federation.signing import verify
from facet.federation.updates import resigned, signed_update
from facet.insights.count_history import CountHistory
from facet.insights.history import DemandHistory, Snapshot
from facet.insights.products import ProductFacts
from facet.insights.regional_counts import RegionCounts
from facet.insights.releases import InterestWindow, StatisticsSettings, check_release, release
from facet.insights.report import InsightsBuilder, counted_figures
from facet.insights.statistics import SENSITIVITY, CountSpace, decode_counts, interest_counts, shopper_vector
from facet.model.features import FeatureSpace
from facet.privacy.settings import PrivacySettings, ReleasePrivacy

SPACE = CountSpace(id_buckets=1_024, value_buckets=4_096)
SETTINGS = StatisticsSettings(value_buckets=4_096, max_shoppers=3, max_items_per_shopper=4)
KEY = b"k" * 32


def _event(shopper: str, item: str, metal: str = "gold", gem: str = "pearl") -> BehaviourEvent:
    return BehaviourEvent(occurred_at=datetime.now(UTC), region="us", storefront="web", shopper_id=shopper,
                          session_id="s", item_id=item, event_type=EventType.VIEW,
                          attributes=ItemAttributes(metal=metal, gem=gem, category="ring", color="white"))


def test_one_shoppers_contribution_is_bounded_whatever_they_did() -> None:
    # Every field's value in one bucket (a hash collision nobody can rule out): still clipped to the bound.
    collided = [(3, [2_000, 2_000, 2_000, 2_000])]
    assert np.linalg.norm(list(shopper_vector(collided).values())) == pytest.approx(SENSITIVITY)
    # Many items with distinct values: under the bound without clipping, and one unit over the items.
    many = [(i, [1_024 + 4 * i + f for f in range(4)]) for i in range(50)]
    vector = shopper_vector(many)
    assert np.linalg.norm(list(vector.values())) <= SENSITIVITY + 1e-9
    assert sum(v for k, v in vector.items() if k < 1_024) == pytest.approx(1.0)
    counts = interest_counts([collided, many, []], SPACE)
    assert counts.shape == (SPACE.size,) and counts[3] > 0


def test_the_window_counts_each_shopper_once_and_bounds_its_memory() -> None:
    now = [1_000_000.0]
    space = FeatureSpace(id_buckets=1_024)
    window = InterestWindow(SETTINGS, SPACE, space.item_bucket, clock=lambda: now[0])
    for _ in range(5):
        window.add(_event("alice", "ring-1"))  # the same piece again and again: one distinct item
    for item in range(10):
        window.add(_event("bob", f"piece-{item}"))  # capped at 4 items
    for shopper in ("carol", "dave", "erin"):
        window.add(_event(shopper, "ring-1"))
    assert len(window) == 3 and window.refused_shoppers == 2
    assert not window.due
    now[0] += SETTINGS.privacy.release_seconds
    assert window.due
    closed = window.close()
    assert closed.shoppers == 3 and len(window) == 0 and not window.due
    assert closed.end - closed.start == timedelta(seconds=SETTINGS.privacy.release_seconds)
    ring = space.item_bucket("ring-1")
    assert closed.counts[ring] == pytest.approx(2.0)  # alice (once, however often) and carol
    assert closed.counts[space.item_bucket("piece-0")] == pytest.approx(0.25)  # bob's first of four
    assert closed.counts[space.item_bucket("piece-5")] == 0  # past bob's cap
    gold = SPACE.value_bucket("metal", "gold")
    assert closed.counts[gold] == pytest.approx(3.0)  # every counted shopper's unit for metal


def _release(**changes: object) -> tuple[object, np.ndarray]:
    window = InterestWindow(SETTINGS, SPACE, FeatureSpace(id_buckets=1_024).item_bucket)
    window.add(_event("alice", "ring-1"))
    counts = release(window.close(), SETTINGS, SPACE, np.random.default_rng(0))
    return counts.model_copy(update=changes), counts


def test_a_release_is_checked_against_everything_the_receiver_can_check() -> None:
    _, good = _release()
    decoded = check_release(good, id_buckets=1_024)
    assert decoded.shape == (SPACE.size,)
    assert good.noise_std == pytest.approx(SETTINGS.privacy.noise_multiplier() * SENSITIVITY)
    assert np.std(decoded) == pytest.approx(good.noise_std, rel=0.05)  # noise on every coordinate
    with pytest.raises(PoisonMessageError, match="noise"):  # claims epsilon 2 with a tenth of the noise
        check_release(good.model_copy(update={"noise_std": good.noise_std / 10}), id_buckets=1_024)
    with pytest.raises(PoisonMessageError) as wrong:
        check_release(good, id_buckets=2_048)
    assert wrong.value.reason == "wrong_shape"
    long_window = good.model_copy(update={"window_start": good.window_start - timedelta(days=1)})
    with pytest.raises(PoisonMessageError, match="window"):
        check_release(long_window, id_buckets=1_024)
    # A bomb: a few bytes that inflate past the declared size are refused before they are held.
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 * SPACE.size))
    with pytest.raises(PoisonMessageError):
        check_release(good.model_copy(update={"payload": bomb}), id_buckets=1_024)
    nan = zstandard.ZstdCompressor().compress(np.full(SPACE.size, np.nan, dtype="<f2").tobytes())
    with pytest.raises(PoisonMessageError, match="NaN"):
        decode_counts(nan, SPACE.size)


def test_signatures_cover_the_counts_on_the_update_and_on_the_forwarded_record() -> None:
    _, counts = _release()
    update = signed_update(KEY, trainer_id="trainer-us", region="us", base_version=1, num_samples=10,
                           codec="rows+int8+zstd", payload=b"delta", statistics=counts)
    assert verify(update, KEY)
    tampered = counts.model_copy(update={"payload": counts.payload + b"\1"})
    assert not verify(update.model_copy(update={"statistics": tampered}), KEY)
    assert not verify(update.model_copy(update={"statistics": None}), KEY)
    plain = resigned(update, KEY, statistics=None)
    assert verify(plain, KEY) and ModelUpdate.model_validate(plain.model_dump()).statistics is None

    private, public = generate_keypair()
    signed = ModelSigner(private).sign_statistics(RegionalStatistics(region="us", trainer_id="trainer-us",
                                                                     update_id=update.update_id, counts=counts))
    verifier = ModelVerifier([public])
    assert verifier.verify_statistics(signed)
    assert not verifier.verify_statistics(signed.model_copy(update={"region": "eu"}))
    assert not verifier.verify_statistics(signed.model_copy(update={"counts": tampered}))
    assert not verifier.verify_statistics(signed.model_copy(update={"signature": "not hex"}))
    assert not ModelVerifier([generate_keypair()[1]]).verify_statistics(signed)


def test_a_release_without_a_delta_is_forwarded_only_from_its_authentic_trainer_and_moves_nothing() -> None:
    import torch
    from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState
    from pydantic import ValidationError

    _, counts = _release()
    alone = signed_update(KEY, trainer_id="trainer-us", region="us", base_version=0, num_samples=0,
                          codec="rows+int8+zstd", payload=b"", statistics=counts)
    assert not alone.carries_delta and verify(alone, KEY)
    with pytest.raises(ValidationError, match="no delta"):  # zero samples may not smuggle a delta in
        signed_update(KEY, trainer_id="trainer-us", region="us", base_version=0, num_samples=0,
                      codec="rows+int8+zstd", payload=b"delta", statistics=counts)
    with pytest.raises(ValidationError, match="no delta"):  # nor be an empty record
        signed_update(KEY, trainer_id="trainer-us", region="us", base_version=0, num_samples=0,
                      codec="rows+int8+zstd", payload=b"")

    aggregator = Aggregator(AggregatorState(parameters={"w": torch.ones(2, 2)}),
                            AggregationPolicy(mode="fedbuff", buffer_size=1), {"trainer-us": KEY})
    assert aggregator.handle(alone).status == "statistics_only"
    assert aggregator.handle(resigned(alone, b"x" * 32)).reason == "bad_signature"
    assert aggregator.handle(resigned(alone, KEY, region="eu")).reason == "wrong_region"
    assert aggregator.state.version == 0 and torch.equal(aggregator.state.parameters["w"], torch.ones(2, 2))
    assert aggregator.buffer_fill == 0


BUDGET = ReleasePrivacy(epsilon=2.0, delta=1e-7, period_seconds=86_400.0, steps_per_period=4)


def test_the_count_history_takes_each_release_once_and_forgets_after_nine_days() -> None:
    history = CountHistory(["us", "eu"], size=8)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    ones = np.ones(8)
    assert history.add("us", "r1", ones, 2.0, day, day + timedelta(hours=6), BUDGET) is None
    assert history.add("us", "r1", ones, 2.0, day, day + timedelta(hours=6), BUDGET) == "duplicate"
    assert history.add("jp", "r2", ones, 2.0, day, day + timedelta(hours=6), BUDGET) == "unreported_region"
    assert history.add("us", "r3", np.ones(9), 2.0, day, day + timedelta(hours=6), BUDGET) == "wrong_shape"
    assert history.add("us", "r4", ones, 2.0, day + timedelta(days=2), day + timedelta(days=2, hours=6),
                       BUDGET) is None
    held, span = history.window("us")
    assert held.releases == 2 and held.noise_std == pytest.approx(np.sqrt(8.0))
    assert span == (day, day + timedelta(days=2, hours=6))
    assert history.regions_counted == ["us"]
    later = day + timedelta(days=10)
    assert history.add("us", "r5", ones, 2.0, later, later + timedelta(hours=6), BUDGET) is None
    held, _ = history.window("us")
    assert held.releases == 1  # the first two have expired
    assert history.add("us", "r6", ones, 2.0, day, day + timedelta(hours=6), BUDGET) == "too_old"


def test_counted_fields_replace_the_models_once_every_region_has_released() -> None:
    products = ProductFacts(FeatureSpace(id_buckets=1_024))
    for i in range(20):
        products.add(f"p{i}", ItemAttributes(metal=("gold", "silver")[i % 2], gem="pearl", category="ring",
                                             color="white"), 100.0, "USD")
    regions = ["us", "eu"]
    counts = CountHistory(regions, SPACE.size)
    history = DemandHistory()
    history.add(Snapshot(1, 1, 0.0, np.full((2, 20), 1 / 20)))
    assert counted_figures(counts, products, regions, SPACE) is None
    day = datetime(2026, 12, 1, tzinfo=UTC)
    for n, (region, metal) in enumerate((("us", "gold"), ("eu", "silver"))):
        exact = np.zeros(SPACE.size)
        exact[SPACE.value_bucket("metal", metal)] = 900.0  # each market's own metal, far above the noise
        exact[SPACE.value_bucket("metal", "gold" if metal == "silver" else "silver")] = 100.0
        counts.add(region, f"r{n}", exact, 3.0, day, day + timedelta(hours=6), BUDGET)
    figures = counted_figures(counts, products, regions, SPACE)
    assert figures is not None and figures.provenance.epsilon_per_period == 2.0
    builder = InsightsBuilder(products, regions, history, counted=figures)
    us = builder.region("us")
    metal = next(f for f in us.lifts if f.field == "metal")
    gold = next(c for c in metal.cells if c.value == "gold")
    assert metal.source == "counts" and gold.lift == pytest.approx(1.8) and 0 < gold.lift_spread < 0.05
    assert next(f for f in us.lifts if f.field == "price_band").source == "model"
    assert builder.provenance.epsilon_spent == 2.0 and builder.provenance.statistics is not None
    assert builder.similarity().matrix[0][1] < 0.5  # the markets' metals differ: their tastes do


def test_a_stated_budget_must_be_one_noise_can_meet() -> None:
    _, good = _release()
    with pytest.raises(PoisonMessageError) as error:
        check_release(good.model_copy(update={"delta": 1e-300}), id_buckets=1_024)
    assert error.value.reason in {"bad_budget", "noise_below_budget"}
    assert PrivacySettings(epsilon=2, sample_rate=1, steps_per_period=4, clip_norm=1, pace=False).epsilon == 2
    assert RegionCounts(np.zeros(3)).noise_std == 0


def test_the_benchmark_replays_releases_with_the_trainers_code_on_the_events_clock() -> None:
    from facet_lab.bench.insights import noisy_counts

    settings = StatisticsSettings(value_buckets=4_096, privacy=ReleasePrivacy(epsilon=50.0, period_seconds=400.0,
                                                                                 steps_per_period=4))
    start = datetime(2026, 12, 1, tzinfo=UTC)
    events = [_event(f"s{i}", f"ring-{i % 3}").model_copy(update={"occurred_at": start + timedelta(seconds=7 * i),
                                                                  "region": ("us", "eu")[i % 2]})
              for i in range(60)]  # 60 shoppers over 413 s: 5 release intervals of 100 s
    space = FeatureSpace(id_buckets=1_024)
    totals, releases = noisy_counts(events, ["us", "eu"], settings, SPACE, space.item_bucket, seed=3)
    gold = SPACE.value_bucket("metal", "gold")
    noise = settings.privacy.noise_multiplier() * SENSITIVITY
    assert releases == 5
    for total in totals:  # every shopper's unit on gold, 30 per region, plus the noise of five releases
        assert total.releases == 5 and total.noise_std == pytest.approx(noise * np.sqrt(5))
        assert total.counts[gold] == pytest.approx(30.0, abs=4 * total.noise_std)
