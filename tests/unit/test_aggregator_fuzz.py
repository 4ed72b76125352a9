"""Hostile updates never crash the aggregator, and a rejected update never changes the model."""

from __future__ import annotations

import msgpack
import torch
from facet.compression.codecs import CodecSpec, encode_delta
from facet.contracts import ModelUpdate
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState
from facet.federation.updates import signed_update
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = b"k" * 16
SHAPES = {"w": (6, 4), "b": (4,)}


def _aggregator() -> Aggregator:
    parameters = {name: torch.ones(shape) for name, shape in SHAPES.items()}
    policy = AggregationPolicy(mode="fedasync", max_staleness=5, max_update_norm=100.0, on_large_norm="reject")
    return Aggregator(AggregatorState(parameters=parameters), policy, {"trainer-eu": KEY})


def _update(
    payload: bytes, *, signed: bool = True, base: int = 0, trainer: str = "trainer-eu", uid: str = "u1"
) -> ModelUpdate:
    return signed_update(KEY if signed else None, update_id=uid, trainer_id=trainer, region="eu",
                         base_version=base, num_samples=10, codec="fp32", payload=payload)


def _payload(delta: dict[str, torch.Tensor]) -> bytes:
    return encode_delta(delta, CodecSpec.parse("fp32"))


#: (the reason the aggregator must give, payload) for a signed update from a known trainer on the current base.
HOSTILE = st.one_of(
    # Random bytes are not a delta; the few that happen to parse as msgpack still hold no model tensors.
    st.binary(max_size=200).map(lambda b: ("bad_codec|wrong_tensors", b)),
    st.just(("wrong_tensors", msgpack.packb({"tensors": {"w": {"k": "dense", "shape": [2**31, 2**31],
                                                             "values": {"q": "fp32", "data": b""}}}}))),
    st.just(("non_finite", _payload({"w": torch.full((6, 4), float("nan")), "b": torch.zeros(4)}))),
    st.just(("non_finite", _payload({"w": torch.zeros(6, 4), "b": torch.tensor([0, float("inf"), 0, 0])}))),
    st.just(("wrong_shape", _payload({"w": torch.zeros(4, 6), "b": torch.zeros(4)}))),
    st.just(("wrong_tensors", _payload({"w": torch.zeros(6, 4)}))),
    st.just(("norm_too_large", _payload({"w": torch.full((6, 4), 1e6), "b": torch.zeros(4)}))),
)


@settings(max_examples=150, deadline=None)
@given(hostile=HOSTILE, signed=st.booleans(), base=st.integers(0, 50),
       trainer=st.sampled_from(["trainer-eu", "intruder"]))
def test_hostile_updates_are_rejected_without_touching_the_model(
    hostile: tuple[str, bytes], signed: bool, base: int, trainer: str
) -> None:
    aggregator = _aggregator()
    before = {name: t.clone() for name, t in aggregator.state.parameters.items()}
    expected, payload = hostile
    outcome = aggregator.handle(_update(payload, signed=signed, base=base, trainer=trainer))
    assert outcome.status == "rejected"
    # Identity is checked before staleness, staleness before the payload is decoded at all.
    if trainer == "intruder":
        assert outcome.reason == "unknown_trainer"
    elif not signed:
        assert outcome.reason == "missing_signature"
    elif base > 0:
        assert outcome.reason == "future_version"
    else:
        assert outcome.reason in expected.split("|"), outcome
    for name, tensor in aggregator.state.parameters.items():
        assert torch.equal(tensor, before[name])
    assert aggregator.state.version == 0


def test_replays_and_forgeries_are_rejected_after_a_good_update() -> None:
    aggregator = _aggregator()
    good = _update(_payload({"w": torch.full((6, 4), 0.1), "b": torch.zeros(4)}))
    assert aggregator.handle(good).status == "applied"
    snapshot = {name: t.clone() for name, t in aggregator.state.parameters.items()}
    forged = good.model_copy(update={"update_id": "u2", "signature": "f" * 64})
    assert aggregator.handle(good).reason == "duplicate"
    assert aggregator.handle(forged).reason == "bad_signature"
    assert aggregator.handle(_update(good.payload, base=7, uid="u3")).reason == "future_version"
    assert all(torch.equal(aggregator.state.parameters[n], snapshot[n]) for n in snapshot)
