from __future__ import annotations

from datetime import UTC, datetime

import msgpack
import pytest
from facet import wire
from facet.contracts import (
    ArtifactPointer,
    BehaviourEvent,
    GlobalModel,
    ModelUpdate,
)
from facet.errors import PoisonMessageError
from pydantic import ValidationError

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_event(**overrides: object) -> BehaviourEvent:
    fields: dict[str, object] = {
        "occurred_at": NOW,
        "region": "eu",
        "storefront": "store-de",
        "shopper_id": "s1",
        "session_id": "sess1",
        "item_id": "ring-1",
        "event_type": "view",
        "price": 120.0,
        "currency": "EUR",
    }
    fields.update(overrides)
    return BehaviourEvent.model_validate(fields)


def make_update(**overrides: object) -> ModelUpdate:
    fields: dict[str, object] = {
        "update_id": "u1",
        "trainer_id": "trainer-eu-0",
        "region": "eu",
        "base_version": 3,
        "num_samples": 100,
        "metrics": {"loss": 1.5, "samples_per_second": 900.0, "steps": 10},
        "codec": "fp16+zstd",
        "payload": b"\x00" * 16,
    }
    fields.update(overrides)
    return ModelUpdate.model_validate(fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", "wishlist"),
        ("region", "Europe!"),
        ("price", "expensive"),
        ("price", float("nan")),
        ("price", -1.0),
        ("occurred_at", "not-a-date"),
        ("occurred_at", datetime(2026, 1, 1)),  # naive: ambiguous across regions
        ("shopper_id", ""),
        ("shopper_id", "x" * 129),
        ("item_id", "has spaces"),
        ("currency", "euro"),
    ],
)
def test_event_rejects_wrong_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        make_event(**{field: value})


@pytest.mark.parametrize("missing", ["occurred_at", "region", "shopper_id", "item_id", "event_type"])
def test_event_rejects_missing_fields(missing: str) -> None:
    fields = make_event().model_dump()
    del fields[missing]
    with pytest.raises(ValidationError, match=missing):
        BehaviourEvent.model_validate(fields)


def test_event_rejects_unknown_fields_and_price_without_currency() -> None:
    with pytest.raises(ValidationError, match="extra"):
        make_event(card_number="4111")
    with pytest.raises(ValidationError, match="currency"):
        make_event(currency=None)


def test_event_normalises_time_to_utc() -> None:
    from datetime import timedelta, timezone

    event = make_event(occurred_at=datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))))
    assert event.occurred_at == datetime(2026, 1, 1, 0, tzinfo=UTC)


def test_update_rejects_bad_fields() -> None:
    with pytest.raises(ValidationError):
        make_update(base_version=-1)
    with pytest.raises(ValidationError):
        make_update(num_samples=0)  # a delta needs samples; only a bare statistics release has none
    with pytest.raises(ValidationError):
        make_update(metrics={"loss": float("nan"), "samples_per_second": 1.0, "steps": 1})


def test_global_model_needs_exactly_one_source() -> None:
    pointer = ArtifactPointer(uri="http://x/m.safetensors", sha256="0" * 64, size_bytes=10)
    with pytest.raises(ValidationError, match="exactly one"):
        GlobalModel(model_name="m", version=1)
    with pytest.raises(ValidationError, match="exactly one"):
        GlobalModel(model_name="m", version=1, parameters=b"x", artifact=pointer)
    assert GlobalModel(model_name="m", version=1, artifact=pointer).artifact == pointer


@pytest.mark.parametrize(
    "message",
    [
        make_event(),
        make_update(),
        GlobalModel(model_name="m", version=2, parameters=b"abc", contributing_updates=("u1", "u2")),
    ],
)
def test_wire_round_trip_every_message_type(message: object) -> None:
    data = wire.encode(message)  # type: ignore[arg-type]
    assert wire.decode(data, type(message)) == message  # type: ignore[arg-type]


def test_wire_rejects_oversize_before_decoding() -> None:
    data = wire.encode(make_event())
    with pytest.raises(PoisonMessageError) as caught:
        wire.decode(data, BehaviourEvent, max_bytes=len(data) - 1)
    assert caught.value.reason == "oversize"


def test_wire_rejects_unknown_schema_version() -> None:
    envelope = msgpack.unpackb(wire.encode(make_event()), timestamp=3)
    envelope["v"] = 99
    with pytest.raises(PoisonMessageError) as caught:
        wire.decode(msgpack.packb(envelope, datetime=True), BehaviourEvent)
    assert caught.value.reason == "unknown_schema_version"
    assert "99" in caught.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "empty"),
        (b"\xc1\xc1garbage", "malformed"),
        (msgpack.packb([1, 2, 3]), "malformed_envelope"),
        (msgpack.packb({"schema": "other", "body": {}}), "malformed_envelope"),
        (msgpack.packb({"schema": "facet", "v": 1, "kind": "event", "body": [1]}), "malformed_envelope"),
        (msgpack.packb({"schema": "facet", "v": 1, "kind": "event", "body": {"region": 5}}), "invalid"),
        (msgpack.packb({1: 2}), "malformed"),
    ],
)
def test_wire_rejects_malformed_payloads_with_a_reason(payload: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonMessageError) as caught:
        wire.decode(payload, BehaviourEvent)
    assert caught.value.reason == reason


def test_wire_rejects_wrong_kind() -> None:
    with pytest.raises(PoisonMessageError) as caught:
        wire.decode(wire.encode(make_event()), ModelUpdate)
    assert caught.value.reason == "wrong_kind"


def test_update_payload_over_the_limit_is_invalid() -> None:
    from facet.contracts import MAX_UPDATE_PAYLOAD_BYTES

    with pytest.raises(ValidationError):
        make_update(payload=b"\x00" * (MAX_UPDATE_PAYLOAD_BYTES + 1))


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1900-01-01T00:00:00+00:00",
     "9999-01-01T00:00:00+00:00"],
)
def test_implausible_timestamps_are_validation_errors_not_exceptions(occurred_at: str) -> None:
    with pytest.raises(ValidationError):
        make_event(occurred_at=occurred_at)


def test_a_time_window_in_the_context_narrows_what_is_plausible() -> None:
    from datetime import timedelta

    from facet.contracts import TimeWindow

    window = TimeWindow.around_now(timedelta(days=30), timedelta(minutes=5))
    fields = make_event().model_dump()
    with pytest.raises(ValidationError, match="before"):
        BehaviourEvent.model_validate({**fields, "occurred_at": datetime(2020, 1, 1, tzinfo=UTC)},
                                      context={"time_window": window})
    recent = datetime.now(UTC) - timedelta(days=1)
    assert BehaviourEvent.model_validate({**fields, "occurred_at": recent},
                                         context={"time_window": window}).occurred_at == recent


@pytest.mark.parametrize(
    "value",
    [
        # a msgpack timestamp far past year 9999 inside a well-formed envelope
        msgpack.packb({"schema": "facet", "v": 1, "kind": "update",
                       "body": {"created_at": msgpack.Timestamp(2**40, 0)}}, datetime=False),
        b"\x91" * 100_000 + b"\xc0",  # nesting past the unpacker's stack
        b"\xd7\xff" + b"\xff" * 8,  # a timestamp extension with an impossible nanosecond field
    ],
)
def test_any_bytes_decode_to_a_poison_reason(value: bytes) -> None:
    with pytest.raises(PoisonMessageError):
        wire.decode(value, ModelUpdate)
