from __future__ import annotations

import hmac

import pytest
import torch
from facet.federation.aggregation import (
    SampleReference,
    WeightedDelta,
    example_weight,
    fedasync_step,
    fedasync_weight,
    fedbuff_step,
    fedbuff_weights,
    update_weight,
)
from facet.federation.signing import sign, verify
from facet.federation.staleness import ConstantStaleness, HingeStaleness, PolynomialStaleness
from facet.federation.updates import signed_update
from facet.federation.validation import UpdateRejected, check_delta, check_staleness, spec_of
from hypothesis import given, settings
from hypothesis import strategies as st

STALENESS = [ConstantStaleness(), PolynomialStaleness(exponent=0.5), PolynomialStaleness(exponent=2.0),
             HingeStaleness(slope=0.5, cutoff=3)]


def _deltas(seed: int, count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [{"w": torch.randn(4, 3, generator=generator), "b": torch.randn(3, generator=generator)}
            for _ in range(count)]


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=6),
    staleness=st.integers(min_value=0, max_value=50),
    seed=st.integers(min_value=0, max_value=1000),
    weight_index=st.integers(min_value=0, max_value=len(STALENESS) - 1),
)
def test_equal_staleness_reduces_to_sample_weighted_fedavg(
    samples: list[int], staleness: int, seed: int, weight_index: int
) -> None:
    weight = STALENESS[weight_index]
    deltas = _deltas(seed, len(samples))
    updates = [WeightedDelta(d, n, staleness) for d, n in zip(deltas, samples, strict=True)]
    model = {"w": torch.zeros(4, 3), "b": torch.zeros(3)}
    fedbuff_step(model, updates, weight, server_lr=1.0)
    total = sum(samples)
    fedavg = {name: sum(d[name] * n / total for d, n in zip(deltas, samples, strict=True)) for name in model}
    for name in model:  # same direction as FedAvg, shrunk by the common staleness factor only
        torch.testing.assert_close(model[name], fedavg[name] * weight(staleness), rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=1000), st.integers(min_value=0, max_value=1000))
def test_staleness_weights_are_monotone_and_one_when_fresh(a: int, b: int) -> None:
    low, high = sorted((a, b))
    for weight in STALENESS:
        assert weight(0) == 1.0
        assert weight(high) <= weight(low)
        assert 0 < weight(high) <= 1


def test_fresh_weights_sum_to_one_and_follow_sample_counts() -> None:
    updates = [WeightedDelta({}, n, 0) for n in (10, 30, 60)]
    assert fedbuff_weights(updates, PolynomialStaleness()) == pytest.approx([0.1, 0.3, 0.6])


def test_stale_updates_count_less() -> None:
    updates = [WeightedDelta({}, 100, 0), WeightedDelta({}, 100, 8)]
    fresh, stale = fedbuff_weights(updates, PolynomialStaleness(exponent=0.5))
    assert stale == pytest.approx(fresh / 3.0)


def test_fedasync_mixes_one_update_scaled_by_alpha_and_staleness() -> None:
    model = {"w": torch.ones(2)}
    fedasync_step(model, WeightedDelta({"w": torch.full((2,), 2.0)}, 5, 3), PolynomialStaleness(exponent=1.0),
                  alpha=0.5)
    torch.testing.assert_close(model["w"], torch.full((2,), 1.0 + 0.5 * 0.25 * 2.0))


def test_against_the_running_mean_a_buffer_of_small_updates_moves_the_model_less() -> None:
    small = [WeightedDelta({}, 100, 0)] * 3
    assert fedbuff_weights(small, ConstantStaleness(), mean_samples=400) == pytest.approx([1 / 12] * 3)
    # At the running mean it is the buffer-normalised step; no single update counts for more than a step.
    assert fedbuff_weights(small, ConstantStaleness(), mean_samples=100) == pytest.approx([1 / 3] * 3)
    assert fedbuff_weights([WeightedDelta({}, 10_000, 0)], ConstantStaleness(), mean_samples=100) == [1.0]
    one = WeightedDelta({}, 200, 3)
    assert fedasync_weight(one, PolynomialStaleness(exponent=1.0), 0.5, mean_samples=400) == pytest.approx(
        0.5 * 0.25 * 0.5)
    assert fedasync_weight(one, ConstantStaleness(), 0.9, mean_samples=20) == 1.0


def _mass_by_region(reference: str) -> dict[str, float]:
    """Total coefficient each region gets from a stream: a small region reports 100 samples every tick,
    a large one 800 samples every fourth tick (twice the data), in buffers of four as they arrive."""
    mass = {"small": 0.0, "large": 0.0}
    reference_samples, buffer = SampleReference(horizon=50), []
    for tick in range(400):
        arrivals = [("small", 100)] + ([("large", 800)] if tick % 4 == 3 else [])
        for region, samples in arrivals:
            buffer.append((region, WeightedDelta({}, samples, 0)))
            if len(buffer) < 4:
                continue
            for _, update in buffer:
                reference_samples.observe(update.num_samples)
            deltas = [update for _, update in buffer]
            mean = reference_samples.mean if reference == "running" else None
            weights = fedbuff_weights(deltas, ConstantStaleness(), mean)
            for (name, _), weight in zip(buffer, weights, strict=True):
                mass[name] += weight
            buffer = []
    return mass


def test_running_mean_weights_regions_by_data_not_by_how_often_they_report() -> None:
    running = _mass_by_region("running")
    assert running["large"] / running["small"] == pytest.approx(2.0, rel=0.15)
    # Normalised by the buffer, the small region fills some buffers alone and takes a whole step.
    buffered = _mass_by_region("buffer")
    assert buffered["large"] / buffered["small"] < 1.5


def test_the_sample_reference_is_the_exact_mean_then_exponential() -> None:
    samples = SampleReference(horizon=3)
    for value in (10, 20, 30):
        samples.observe(value)
    assert samples.mean == pytest.approx(20.0) and samples.count == 3
    samples.observe(50)
    assert samples.mean == pytest.approx(30.0)
    # Restored from a checkpoint's (mean, count), it continues exactly where it stopped.
    restored = SampleReference(3, 30.0, 4)
    restored.observe(60)
    samples.observe(60)
    assert restored.mean == samples.mean


def test_an_update_weighs_its_examples_times_its_staleness() -> None:
    update = WeightedDelta({}, 300, 3)
    staleness = PolynomialStaleness(exponent=0.5)
    assert update_weight(update, staleness, 100.0) == pytest.approx(example_weight(300, 100.0) * staleness(3))
    assert example_weight(300, 100.0) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        example_weight(1, 0.0)


def test_a_step_reports_the_scales_it_applied() -> None:
    model = {"w": torch.zeros(2)}
    updates = [WeightedDelta({"w": torch.ones(2)}, 100, 0), WeightedDelta({"w": torch.ones(2)}, 300, 0)]
    scales = fedbuff_step(model, updates, ConstantStaleness(), server_lr=2.0)
    assert scales == pytest.approx([0.5, 1.5])
    assert model["w"].tolist() == pytest.approx([2.0, 2.0])


SPEC = spec_of({"w": torch.zeros(4, 3), "b": torch.zeros(3)})


@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        ({"w": torch.zeros(4, 3)}, "wrong_tensors"),
        ({"w": torch.zeros(4, 3), "b": torch.zeros(3), "x": torch.zeros(1)}, "wrong_tensors"),
        ({"w": torch.zeros(3, 4), "b": torch.zeros(3)}, "wrong_shape"),
        ({"w": torch.zeros(4, 3, dtype=torch.float64), "b": torch.zeros(3)}, "wrong_dtype"),
        ({"w": torch.full((4, 3), float("nan")), "b": torch.zeros(3)}, "non_finite"),
        ({"w": torch.zeros(4, 3), "b": torch.tensor([0.0, float("inf"), 0.0])}, "non_finite"),
    ],
)
def test_bad_deltas_are_rejected_with_a_reason(delta: dict[str, torch.Tensor], reason: str) -> None:
    with pytest.raises(UpdateRejected) as caught:
        check_delta(delta, SPEC, max_norm=10.0)
    assert caught.value.reason == reason


def test_large_norm_is_clipped_or_rejected() -> None:
    delta = {"w": torch.full((4, 3), 10.0), "b": torch.zeros(3)}
    clipped, clipped_norm = check_delta(delta, SPEC, max_norm=1.0, on_large_norm="clip")
    assert clipped_norm == pytest.approx(1.0)
    assert float(torch.linalg.vector_norm(clipped["w"])) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(UpdateRejected, match="norm"):
        check_delta(delta, SPEC, max_norm=1.0, on_large_norm="reject")


def test_staleness_checks() -> None:
    assert check_staleness(3, 5, 10) == 2
    with pytest.raises(UpdateRejected) as future:
        check_staleness(6, 5, 10)
    assert future.value.reason == "future_version"
    with pytest.raises(UpdateRejected) as stale:
        check_staleness(0, 50, 10)
    assert stale.value.reason == "too_stale"


def test_signatures_bind_every_field_and_the_payload() -> None:
    update = signed_update(None, trainer_id="t1", region="eu", base_version=1, num_samples=5, codec="fp32",
                           payload=b"abc")
    key = b"k" * 32
    signed = update.model_copy(update={"signature": sign(update, key)})
    assert verify(signed, key)
    assert not verify(signed, b"other-key" * 4)
    assert not verify(update, key)  # unsigned
    for tampered in ({"payload": b"abd"}, {"num_samples": 6}, {"base_version": 2}, {"region": "us"}):
        assert not verify(signed.model_copy(update=tampered), key)
    assert hmac.compare_digest(sign(update, key), sign(update, key))
