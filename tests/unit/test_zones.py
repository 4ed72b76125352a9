"""The zone tier: its regions' updates through the global aggregator's own checks and FedBuff math, into one
forwarded step that the global aggregator re-bases onto the fleet and applies exactly once."""

from __future__ import annotations

import pytest
import torch
from facet.compression.codecs import CodecSpec, decode_delta, encode_delta
from facet.contracts import ZoneStep
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState
from facet.federation.staleness import ConstantStaleness, PolynomialStaleness
from facet.federation.updates import signed_update
from facet.federation.zones import ZoneAggregator, ZoneMap, forwarded_update_id
from pydantic import ValidationError

KEYS = {"trainer-jp": b"j" * 32, "trainer-in": b"i" * 32, "trainer-uk": b"u" * 32}
ZONE_KEY = b"z" * 32
SHAPE = (4, 3)


def _tier(buffer_size: int = 2) -> ZoneAggregator:
    state = AggregatorState(parameters={"w": torch.randn(SHAPE)})  # the tier zeroes what it is given
    policy = AggregationPolicy(mode="fedbuff", buffer_size=buffer_size, server_lr=2.0, max_staleness=10,
                               staleness=PolynomialStaleness(exponent=0.5), server_lr_decay_versions=5)
    return ZoneAggregator("apac", state, policy, KEYS, None, codec="fp32", signing_key=ZONE_KEY)


def _update(region: str, delta: torch.Tensor, samples: int, base: int, uid: str):  # type: ignore[no-untyped-def]
    trainer = f"trainer-{region}"
    return signed_update(KEYS[trainer], trainer_id=trainer, region=region, base_version=base,
                         num_samples=samples, codec="fp32", update_id=uid,
                         payload=encode_delta({"w": delta}, CodecSpec.parse("fp32")))


def test_zones_parse_and_refuse_overlaps_and_bad_names() -> None:
    zones = ZoneMap.parse("apac:jp,in,ae; emea:eu,uk ;americas:us,br")
    assert zones.zones["emea"] == ("eu", "uk") and zones.zone_of("br") == "americas" and zones.zone_of("x") is None
    for bad in ("apac:jp;emea:jp", "apac", "APAC:jp", "apac:jp;apac:in", "apac:"):
        with pytest.raises(ValueError):
            ZoneMap.parse(bad)
    with pytest.raises(ValidationError):
        ZoneMap(zones={"apac": ()})
    covered = ZoneMap.parse("uk:united-kingdom,eire").covering(["united-kingdom", "germany", "eire", "japan"])
    assert covered.zones["rest"] == ("germany", "japan") and covered.zone_of("eire") == "uk"
    assert zones.covering(["jp", "us"]) == zones  # nothing left out: nothing added
    with pytest.raises(ValueError, match="rest"):
        ZoneMap.parse("rest:jp").covering(["jp", "us"])


def test_a_zone_step_forwards_the_sample_and_staleness_weighted_mean_as_one_signed_update() -> None:
    tier = _tier()
    tier.follow((1, 5))
    fresh, stale = torch.ones(SHAPE), torch.full(SHAPE, 3.0)
    outcome, forwarded = tier.handle(_update("jp", fresh, 30, base=5, uid="a"))
    assert outcome.status == "buffered" and forwarded is None
    _, forwarded = tier.handle(_update("in", stale, 10, base=1, uid="b"))  # staleness 4 against global 5
    assert forwarded is not None
    weight = (1 + 4) ** -0.5
    expected = (30 * fresh + 10 * weight * stale) / 40  # a zone averages: no server step of its own
    assert torch.allclose(decode_delta(forwarded.payload)["w"], expected)
    assert forwarded.num_samples == 40 and forwarded.base_version == 5
    assert forwarded.trainer_id == "zone-apac" and forwarded.region == "apac"
    assert forwarded.update_id == forwarded_update_id("apac", ["b", "a"])  # the same buffer: the same id
    assert torch.count_nonzero(tier.state.parameters["w"]) == 0  # the next step starts from nothing
    assert tier.handle(_update("jp", fresh, 30, base=5, uid="a"))[0].reason == "duplicate"
    forged = signed_update(b"x" * 32, trainer_id="trainer-jp", region="jp", base_version=5, num_samples=1,
                           codec="fp32", payload=encode_delta({"w": fresh}, CodecSpec.parse("fp32")))
    assert tier.handle(forged)[0].reason == "bad_signature"
    assert tier.handle(_update("jp", fresh, 30, base=6, uid="c"))[0].reason == "future_version"
    tier.follow((2, 0))  # a restored global aggregator: a newer epoch wins over any older version
    assert tier.global_version == 0


def test_a_dominant_market_keeps_its_weight_in_a_zone_as_it_does_in_flat_fedbuff() -> None:
    """Flat FedBuff weighs an update n s(tau) / (K n_mean), at most 1: a market far larger than the mean keeps
    the whole of its stale delta. A zone that averaged by its own buffer's samples instead shrank it by its
    staleness (on retail the UK's share of the global model's movement fell from 46 % flat to 16 %, and the
    hierarchy ended at 0.65 of flat). The zone measures samples against its running mean, as flat does."""
    tier = _tier()
    tier.follow((1, 8))
    for index in range(6):  # the small market's steady reports set the zone's running mean (about 10)
        tier.handle(_update("jp", torch.zeros(SHAPE), 10, base=8, uid=f"small-{index}"))
    tier.handle(_update("jp", torch.zeros(SHAPE), 10, base=8, uid="small-last"))
    big = torch.ones(SHAPE)
    _, forwarded = tier.handle(_update("in", big, 5_000, base=0, uid="big"))  # staleness 8: s = 1/3
    assert forwarded is not None
    # n s / (K n_mean) is far above 1 for the big market: its coefficient is capped at 1, staleness or not.
    assert torch.allclose(decode_delta(forwarded.payload)["w"], big)


def test_the_global_aggregator_counts_every_zone_member_as_flat_fedbuff_would() -> None:
    """Flat FedBuff moves the model n_k s / (K n_mean) Delta_k per update, n_mean the fleet's mean. A zone of
    one big market measures it against its own mean (1/K each); the global aggregator re-bases the step by
    n_mean_Z / n_mean. Weighing the zone's mean by its summed samples instead, like a trainer's, capped the
    big zone's step at 1: 1/K per member whatever its size (retail's hierarchy: 0.88 of flat)."""
    def tier(zone: str) -> ZoneAggregator:
        policy = AggregationPolicy(mode="fedbuff", buffer_size=2, max_staleness=10, staleness=ConstantStaleness())
        made = ZoneAggregator(zone, AggregatorState(parameters={"w": torch.zeros(SHAPE)}), policy, KEYS,
                              {"trainer-jp": "jp", "trainer-in": "in", "trainer-uk": "uk"}, codec="fp32",
                              signing_key=ZONE_KEY)
        made.follow((1, 0))
        return made

    def one_hot(index: int) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.tensor(index), SHAPE[0] * SHAPE[1]).float().reshape(SHAPE)

    small, big = tier("apac"), tier("emea")
    small.handle(_update("jp", one_hot(0), 100, base=0, uid="jp"))
    _, small_step = small.handle(_update("in", one_hot(1), 100, base=0, uid="in"))
    big.handle(_update("uk", one_hot(2), 1_000, base=0, uid="uk-1"))
    _, big_step = big.handle(_update("uk", one_hot(3), 1_000, base=0, uid="uk-2"))
    assert small_step is not None and big_step is not None
    assert big_step.zone_step == ZoneStep(member_reference=1_000, headroom=2.0)  # 1/K each against its own mean
    world = Aggregator(AggregatorState(parameters={"w": torch.zeros(SHAPE)}),
                       AggregationPolicy(mode="fedbuff", buffer_size=1, max_staleness=10,
                                         staleness=ConstantStaleness()),
                       {"zone-apac": ZONE_KEY, "zone-emea": ZONE_KEY})
    assert world.handle(small_step).status == "applied" and world.handle(big_step).status == "applied"
    fleet_mean = (100 + 1_000) / 2
    flat = [100 / (2 * 100), 100 / (2 * 100), 1_000 / (2 * fleet_mean), 1_000 / (2 * fleet_mean)]
    assert torch.allclose(world.state.parameters["w"].flatten()[:4], torch.tensor(flat))
    # A trainer cannot pass for a zone step, nor a zone send an undescribed one.
    member = _update("jp", one_hot(0), 100, base=0, uid="x")
    world.trainer_keys["trainer-jp"] = KEYS["trainer-jp"]
    claimed = signed_update(KEYS["trainer-jp"], trainer_id="trainer-jp", region="jp", base_version=0,
                            num_samples=100, codec="fp32", payload=member.payload,
                            zone_step=ZoneStep(member_reference=1, headroom=10))
    assert world.handle(claimed).reason == "zone_step_mismatch"
    bare = signed_update(ZONE_KEY, trainer_id="zone-apac", region="apac", base_version=0, num_samples=100,
                         codec="fp32", payload=member.payload)
    assert world.handle(bare).reason == "zone_step_mismatch"
    raised = big_step.model_copy(update={"zone_step": ZoneStep(member_reference=1_000, headroom=50.0)})
    assert world.handle(raised).reason == "bad_signature"  # the step's description is signed


def test_the_global_aggregator_applies_a_zone_step_once() -> None:
    tier = _tier(buffer_size=1)
    tier.follow((1, 0))
    _, forwarded = tier.handle(_update("jp", torch.ones(SHAPE), 20, base=0, uid="a"))
    assert forwarded is not None
    policy = AggregationPolicy(mode="fedbuff", buffer_size=1, max_staleness=10)
    world = Aggregator(AggregatorState(parameters={"w": torch.zeros(SHAPE)}), policy, {"zone-apac": ZONE_KEY})
    assert world.handle(forwarded).status == "applied" and world.state.version == 1
    assert torch.allclose(world.state.parameters["w"], torch.ones(SHAPE))
    assert world.handle(forwarded).reason == "duplicate"  # re-sent after a crash: never applied twice
    assert world.region_label(forwarded) == "apac"
    assert world.handle(forwarded.model_copy(update={"region": "emea"})).reason == "bad_signature"


def test_a_partly_filled_zone_buffer_can_be_stepped_and_forwarded() -> None:
    """A buffer of 3 stepped with one update in it (the zone's oldest waited too long) weighs it as a full
    buffer would, 1/3: flat FedBuff gives every update n s / (K n_mean) whenever it arrives, and the global
    aggregator re-bases the zone's step, so a lone member weighed 1 here would count 3 times its share."""
    tier = _tier(buffer_size=3)
    tier.follow((1, 2))
    assert tier.flush() is None  # nothing buffered: nothing to forward
    outcome, forwarded = tier.handle(_update("jp", torch.ones(SHAPE), 12, base=2, uid="a"))
    assert outcome.status == "buffered" and forwarded is None
    forwarded = tier.flush()  # the zone's oldest update waited too long
    assert forwarded is not None and forwarded.num_samples == 12 and forwarded.base_version == 2
    assert torch.allclose(decode_delta(forwarded.payload)["w"], torch.ones(SHAPE) / 3)
    assert forwarded.zone_step == ZoneStep(member_reference=12, headroom=3.0)
    assert forwarded.update_id == forwarded_update_id("apac", ["a"]) and tier.aggregator.buffer_fill == 0
    world = Aggregator(AggregatorState(parameters={"w": torch.zeros(SHAPE)}, version=2),
                       AggregationPolicy(mode="fedbuff", buffer_size=1, max_staleness=10), {"zone-apac": ZONE_KEY})
    assert world.handle(forwarded).status == "applied"
    assert torch.allclose(world.state.parameters["w"], torch.ones(SHAPE) / 3)  # n_mean_Z / n_mean = 1
