"""One signed but hostile trainer cannot take over the model: its claims are bounded by the fleet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from facet.compression.codecs import CodecSpec, encode_delta
from facet.contracts import ModelUpdate
from facet.federation.robust import BoundRejected, InfluenceGuard, RobustnessPolicy
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState
from facet.federation.staleness import ConstantStaleness
from facet.federation.updates import signed_update
from facet_aggregator import checkpoint

REGIONS = ("us", "eu", "uk", "jp", "br")
KEYS = {f"trainer-{r}": f"key-{r}".encode() for r in REGIONS}


def _guard(**policy: object) -> InfluenceGuard:
    guard = InfluenceGuard(RobustnessPolicy(**policy))
    for round_ in range(5):
        for region in REGIONS[1:]:
            bounded = guard.bound(f"trainer-{region}", 500 + round_, 1.0, 1.0)
            guard.record(f"trainer-{region}", bounded, 1.0, 1.0)
    return guard


def test_inflated_sample_counts_are_capped_by_the_quota_and_the_trainers_history() -> None:
    guard = _guard(sample_quotas={"trainer-us": 2_000})
    bounded = guard.bound("trainer-us", 1_000_000_000, 1.0, 1.0)
    assert bounded.num_samples == 2_000 and bounded.clipped == "samples_quota"
    cold = InfluenceGuard(RobustnessPolicy(max_samples_per_update=10_000))
    assert cold.bound("trainer-us", 10**9, 1.0, 1.0).num_samples == 10_000, "the quota holds during warm-up"
    honest_then_greedy = _guard()
    claim = honest_then_greedy.bound("trainer-eu", 40_000, 1.0, 1.0)  # its history says ~502
    assert claim.num_samples == 4 * 502 and claim.clipped == "samples_history"


def test_norm_outliers_are_rejected_and_long_deltas_clipped() -> None:
    guard = _guard()
    with pytest.raises(BoundRejected) as caught:
        guard.bound("trainer-us", 500, 50.0, 1.0)
    assert caught.value.reason == "norm_outlier"
    long = guard.bound("trainer-us", 500, 4.0, 1.0)
    assert long.scale == pytest.approx(3.0 * (1 / 502) / (4.0 / 500)) and long.clipped == "norm"
    # A market that trains 30× the samples per update may send a 30× longer delta: norms are per sample.
    big_market = guard.bound("trainer-us", 15_000, 30.0, 1.0)
    assert big_market.scale == 1.0 and big_market.clipped == ""
    honest = guard.bound("trainer-us", 510, 1.1, 1.0)
    assert honest.scale == 1.0 and honest.num_samples == 510 and honest.clipped == ""


def test_the_influence_backstop_bounds_samples_times_norm() -> None:
    guard = _guard(influence_clip_multiple=2.5)
    bounded = guard.bound("trainer-us", 1900, 2.0, 1.0)  # 3.8× the samples, 2× the norm
    assert bounded.scale == pytest.approx(2.5 * 502 / (1900 * 2.0)) and bounded.clipped == "influence"


def test_a_fast_attacker_cannot_move_the_reference() -> None:
    guard = _guard()
    for _ in range(200):  # the attacker reports 200 times with long deltas
        bounded = guard.bound("trainer-us", 10**9, 2.9, 1.0)
        guard.record("trainer-us", bounded, 2.9, 1.0)
    assert guard.bound("trainer-eu", 600, 1.0, 1.0).scale == 1.0
    assert guard.bound("trainer-us", 500, 4.0, 1.0).scale == pytest.approx(3.0 * (1 / 502) / (4.0 / 500))


def _update(region: str, index: int, delta: dict[str, torch.Tensor], samples: int, trainer: str | None = None,
            base: int = 0) -> ModelUpdate:
    trainer = trainer or f"trainer-{region}"
    return signed_update(KEYS[trainer], update_id=f"{region}-{index}", trainer_id=trainer, region=region,
                         base_version=base, num_samples=samples, codec="fp32",
                         payload=encode_delta(delta, CodecSpec.parse("fp32")))


def test_an_inflated_trainer_moves_the_model_like_a_few_honest_ones_not_ten_thousand() -> None:
    policy = AggregationPolicy(mode="fedasync", alpha=0.5, staleness=ConstantStaleness(), max_staleness=10_000,
                               max_update_norm=1e6,
                               robustness=RobustnessPolicy(sample_quotas={f"trainer-{r}": 600 for r in REGIONS}))
    aggregator = Aggregator(AggregatorState(parameters={"w": torch.zeros(8)}), policy, KEYS)
    generator = torch.Generator().manual_seed(0)
    for index in range(6):
        for region in REGIONS[1:]:
            delta = {"w": torch.randn(8, generator=generator) * 0.1}
            outcome = aggregator.handle(_update(region, index, delta, 500, base=aggregator.state.version))
            assert outcome.status == "applied"
    honest = sorted(m.distance for m in aggregator.last_moves)  # the last one
    reference_move = aggregator.last_moves[0].distance
    attack = aggregator.handle(_update("us", 99, {"w": torch.ones(8) * 0.1}, 10**9, base=aggregator.state.version))
    assert attack.status == "applied" and attack.clipped
    assert aggregator.last_moves[0].distance <= 3 * reference_move, honest
    # ...and the running mean of sample counts was fed the capped claim, not 10⁹.
    assert aggregator.state.mean_samples is not None and aggregator.state.mean_samples < 1000


def test_a_trainer_key_speaks_only_for_its_region() -> None:
    policy = AggregationPolicy(mode="fedasync", max_staleness=10)
    aggregator = Aggregator(AggregatorState(parameters={"w": torch.zeros(8)}), policy, KEYS)
    outcome = aggregator.handle(_update("eu", 0, {"w": torch.ones(8)}, 10, trainer="trainer-us"))
    assert outcome.status == "rejected" and outcome.reason == "wrong_region"
    bound = Aggregator(AggregatorState(parameters={"w": torch.zeros(8)}), policy, {"store-a": b"k"},
                       trainer_regions={"store-a": "jp"})
    update = signed_update(b"k", trainer_id="store-a", region="eu", base_version=0, num_samples=1, codec="fp32",
                           payload=encode_delta({"w": torch.ones(8)}, CodecSpec.parse("fp32")))
    assert bound.handle(update).reason == "wrong_region"


def test_trainer_key_rotation_overlaps_two_ids_bound_to_one_region() -> None:
    policy = AggregationPolicy(mode="fedasync", max_staleness=10)
    keys = {"trainer-us": b"old", "trainer-us-2": b"new"}
    aggregator = Aggregator(AggregatorState(parameters={"w": torch.zeros(8)}), policy, keys)
    for index, (trainer, key) in enumerate(keys.items()):
        update = signed_update(key, trainer_id=trainer, region="us", base_version=index, num_samples=5,
                               codec="fp32", payload=encode_delta({"w": torch.ones(8)}, CodecSpec.parse("fp32")))
        assert aggregator.handle(update).status == "applied"


def _fresh_fedbuff(buffer_size: int = 4) -> Aggregator:
    policy = AggregationPolicy(mode="fedbuff", buffer_size=buffer_size, staleness=ConstantStaleness(),
                               max_staleness=10_000, max_update_norm=1e6)
    return Aggregator(AggregatorState(parameters={"w": torch.zeros(8)}), policy, KEYS)


def test_an_outlier_that_arrives_before_any_fleet_reference_is_judged_against_its_buffer() -> None:
    aggregator = _fresh_fedbuff()
    # The attacker reports first, when nobody else has: no fleet reference exists to bound it by.
    first = aggregator.handle(_update("us", 0, {"w": torch.ones(8) * 100.0}, 500))
    assert first.status == "buffered"
    honest = {"w": torch.ones(8) * 0.1}
    for index, region in enumerate(("eu", "uk")):
        assert aggregator.handle(_update(region, index, honest, 500)).status == "buffered"
    step = aggregator.handle(_update("jp", 3, honest, 500))
    assert step.status == "applied" and step.new_version == 1
    assert step.dropped == (("us-0", "norm_outlier"),)
    assert float(aggregator.state.parameters["w"].abs().max()) < 1.0  # the honest three moved it, nothing more
    assert "trainer-us" not in aggregator.guard.trainers  # a dropped update never enters the history
    assert set(aggregator.guard.trainers) == {"trainer-eu", "trainer-uk", "trainer-jp"}


def test_a_long_but_plausible_early_update_is_clipped_and_the_trigger_itself_can_be_refused() -> None:
    aggregator = _fresh_fedbuff(buffer_size=3)
    honest = {"w": torch.ones(8) * 0.1}
    for index, region in enumerate(("eu", "uk")):
        aggregator.handle(_update(region, index, honest, 500))
    refused = aggregator.handle(_update("us", 2, {"w": torch.ones(8) * 50.0}, 500))
    assert refused.status == "rejected" and refused.reason == "norm_outlier" and refused.new_version == 1
    clipped = _fresh_fedbuff(buffer_size=3)
    for index, region in enumerate(("eu", "uk")):
        clipped.handle(_update(region, index, honest, 500))
    step = clipped.handle(_update("us", 2, {"w": torch.ones(8) * 0.4}, 500))  # 4× the others: clipped to 3×
    assert step.status == "applied" and step.dropped == ()
    history = clipped.guard.trainers["trainer-us"].norms
    assert history[-1] == pytest.approx(3 * float(torch.linalg.vector_norm(honest["w"])) / 500, rel=1e-5)
    alone = _fresh_fedbuff(buffer_size=1)  # nothing to compare with: only the absolute bounds apply
    assert alone.handle(_update("us", 0, {"w": torch.ones(8) * 100.0}, 500)).status == "applied"


def test_a_short_first_update_over_few_samples_is_not_taken_for_an_outlier() -> None:
    aggregator = _fresh_fedbuff(buffer_size=3)
    honest = {"w": torch.ones(8) * 0.1}
    for index, region in enumerate(("eu", "uk")):
        aggregator.handle(_update(region, index, honest, 600))
    # 3 samples: a tenth of the others' norm, yet 20 times their norm per sample (a first, partial update).
    small = aggregator.handle(_update("br", 2, {"w": torch.ones(8) * 0.01}, 3))
    assert small.status == "applied" and small.dropped == ()
    assert "trainer-br" in aggregator.guard.trainers


def test_a_zone_is_bounded_by_its_configuration_not_by_the_trainers_norms() -> None:
    """A zone forwards the mean of one to a buffer's worth of already bounded updates: its lone forward is
    long per sample next to its full steps (retail's were refused as 8x outliers), and its plain norm follows
    the members it holds (10x between a big market's steps and small ones'). The operator's tier is bounded
    by its configured quota; its norms never enter the trainers' reference."""
    guard = _guard(sample_quotas={"zone-emea": 30_000})
    for _ in range(6):  # full steps: the mean of 4 updates of ~500 samples
        bounded = guard.bound("zone-apac", 2_000, 0.5, 1.0)
        assert bounded.scale == 1.0 and bounded.num_samples == 2_000
        guard.record("zone-apac", bounded, 0.5, 1.0)
    lone = guard.bound("zone-apac", 500, 1.0, 1.0)  # 8x the full steps' norm per sample, 6x the trainers'
    assert lone.scale == 1.0 and lone.clipped == "" and lone.referenced
    big = guard.bound("zone-apac", 40_000, 6.0, 1.0)  # a big market's step: no own-history or default cap
    assert big.num_samples == 40_000 and big.scale == 1.0
    capped = guard.bound("zone-emea", 10**9, 1.0, 1.0)
    assert capped.num_samples == 30_000 and capped.clipped == "samples_quota"
    assert guard._fleet_median("norms") == pytest.approx(1 / 502)
    # A trainer named like no zone is judged as before.
    with pytest.raises(BoundRejected):
        guard.bound("trainer-us", 500, 50.0, 1.0)


def _popular(generator: torch.Generator, signal: float, dims: int = 256) -> torch.Tensor:
    """An honest region's item-popularity delta: the shared direction (popular items up) plus its own
    variation; ``signal`` sets how much of it is shared (DP noise drowns it)."""
    shared = torch.linspace(1.0, -1.0, dims)
    return signal * shared + torch.randn(dims, generator=generator)


def _warm_direction_guard(signal: float, seed: int = 0) -> tuple[InfluenceGuard, torch.Generator]:
    guard = InfluenceGuard(RobustnessPolicy(agreement_reject_mads=4.0))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(6):
        for region in REGIONS[1:]:
            probe = _popular(generator, signal)
            bounded = guard.bound(f"trainer-{region}", 500, 1.0, 1.0, probe)
            guard.record(f"trainer-{region}", bounded, 1.0, 1.0)
    return guard, generator


def test_a_sign_flip_or_noise_against_the_fleets_shared_direction_is_refused() -> None:
    guard, generator = _warm_direction_guard(signal=1.0)
    honest = guard.bound("trainer-us", 500, 1.0, 1.0, _popular(generator, 1.0))
    assert honest.agreement is not None and honest.agreement > 0.2 and honest.scale == 1.0
    for hostile in (-_popular(generator, 1.0), torch.randn(256, generator=generator)):
        with pytest.raises(BoundRejected) as caught:
            guard.bound("trainer-us", 500, 1.0, 1.0, hostile)  # same size, same claims: only direction differs
        assert caught.value.reason == "opposes_fleet"
    # The cosines it is judged against survive a checkpoint (the directions too: see the restart test below).
    restored = InfluenceGuard(RobustnessPolicy())
    restored.restore(guard.snapshot())
    assert list(restored.trainers["trainer-eu"].agreements) == list(guard.trainers["trainer-eu"].agreements)


def test_the_direction_rule_follows_the_fleet_when_dp_noise_drowns_the_shared_direction() -> None:
    """Under DP an honest update's popularity signal can be small against its noise: the whole fleet's
    cosines then sit near zero, and so does the threshold, below them, instead of refusing everyone."""
    guard, generator = _warm_direction_guard(signal=0.002)
    refused = 0
    for _ in range(200):
        try:
            guard.bound("trainer-us", 500, 1.0, 1.0, _popular(generator, 0.002))
        except BoundRejected:
            refused += 1
    assert refused <= 2, f"{refused} of 200 honest noisy updates refused"


DIRECTION_POLICY = AggregationPolicy(mode="fedasync", staleness=ConstantStaleness(), max_staleness=10_000,
                                     max_update_norm=1e6, robustness=RobustnessPolicy(agreement_reject_mads=4.0))


def _agreeing_fleet(seed: int) -> tuple[Aggregator, Callable[[float], dict[str, torch.Tensor]]]:
    """An aggregator with the direction bound on, after four updates from each region but us that agree on
    popularity; and a maker of such deltas (sign -1: flipped)."""
    parameters = {"item_bias.weight": torch.zeros(64, 1), "w": torch.zeros(8)}
    aggregator = Aggregator(AggregatorState(parameters=parameters), DIRECTION_POLICY, KEYS)
    generator = torch.Generator().manual_seed(seed)

    def delta(sign: float) -> dict[str, torch.Tensor]:
        return {"item_bias.weight": sign * _popular(generator, 3.0, 64).unsqueeze(1) * 0.01,
                "w": torch.randn(8, generator=generator) * 0.01}

    for index in range(4):
        for region in REGIONS[1:]:
            outcome = aggregator.handle(_update(region, index, delta(1.0), 500, base=aggregator.state.version))
            assert outcome.status == "applied", outcome
    return aggregator, delta


def test_the_aggregator_refuses_a_sign_flipped_update_and_the_model_does_not_move() -> None:
    aggregator, delta = _agreeing_fleet(seed=1)
    before = {n: t.clone() for n, t in aggregator.state.parameters.items()}
    flipped = aggregator.handle(_update("us", 9, delta(-1.0), 500, base=aggregator.state.version))
    assert flipped.status == "rejected" and flipped.reason == "opposes_fleet"
    assert all(torch.equal(before[n], aggregator.state.parameters[n]) for n in before)
    assert aggregator.handle(_update("us", 10, delta(1.0), 500, base=aggregator.state.version)).status == "applied"


def test_a_restarted_aggregator_still_refuses_a_sign_flip_from_its_first_update(tmp_path: Path) -> None:
    """The fleet's directions are checkpointed: without them, the first updates after a restart go unjudged."""
    aggregator, delta = _agreeing_fleet(seed=2)
    checkpoint.save(tmp_path, aggregator.state, {0: 1})
    restored = checkpoint.load(tmp_path)
    assert restored is not None and restored.state.guard_directions
    restarted = Aggregator(restored.state, DIRECTION_POLICY, KEYS)
    flipped = restarted.handle(_update("us", 9, delta(-1.0), 500, base=restarted.state.version))
    assert flipped.status == "rejected" and flipped.reason == "opposes_fleet"
