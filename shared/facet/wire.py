"""msgpack wire format for every Kafka message: a small envelope header plus the validated body.

Envelope: ``{"schema": "facet", "v": <schema version>, "kind": <message kind>, "body": {...}}``.
Any decoding or validation failure raises :class:`PoisonMessageError`, the one signal that routes an
input to the dead-letter topic.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgpack
from pydantic import BaseModel, ValidationError

from facet.contracts import BehaviourEvent, GlobalModel, ModelUpdate, RegionalStatistics
from facet.errors import PoisonMessageError

SCHEMA_NAME: Final = "facet"
SCHEMA_VERSION: Final = 1
#: Kafka header naming the envelope, so tools can tell a Facet message without decoding it.
SCHEMA_HEADER: Final = "facet-schema"

KIND_BY_MODEL: Final[dict[type[BaseModel], str]] = {
    BehaviourEvent: "event",
    ModelUpdate: "update",
    GlobalModel: "model",
    RegionalStatistics: "statistics",
}

M = TypeVar("M", bound=BaseModel)


def kind_of(model_type: type[BaseModel]) -> str:
    try:
        return KIND_BY_MODEL[model_type]
    except KeyError:
        raise TypeError(f"{model_type.__name__} is not a wire message") from None


def schema_headers(model_type: type[BaseModel]) -> list[tuple[str, bytes]]:
    return [(SCHEMA_HEADER, f"{kind_of(model_type)}/{SCHEMA_VERSION}".encode())]


def encode(message: BaseModel) -> bytes:
    envelope = {
        "schema": SCHEMA_NAME,
        "v": SCHEMA_VERSION,
        "kind": kind_of(type(message)),
        "body": message.model_dump(mode="python"),
    }
    packed: bytes = msgpack.packb(envelope, datetime=True, use_bin_type=True)
    return packed


def decode(
    data: bytes | None, model_type: type[M], *, max_bytes: int | None = None, context: dict[str, Any] | None = None
) -> M:
    """Decode and validate one message, or raise PoisonMessageError with a reason code, whatever the bytes.

    ``context`` reaches the contract's validators (a :class:`facet.contracts.TimeWindow` as ``time_window``).
    """
    if data is None:
        raise PoisonMessageError("empty", "message has no value (tombstone or null)")
    if max_bytes is not None and len(data) > max_bytes:
        raise PoisonMessageError("oversize", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    envelope = _unpack(data)
    if envelope.get("schema") != SCHEMA_NAME or "body" not in envelope:
        raise PoisonMessageError("malformed_envelope", "not a Facet envelope")
    version = envelope.get("v")
    if version != SCHEMA_VERSION:
        raise PoisonMessageError(
            "unknown_schema_version", f"schema version {version!r}; this build reads {SCHEMA_VERSION}"
        )
    expected = kind_of(model_type)
    if envelope.get("kind") != expected:
        raise PoisonMessageError("wrong_kind", f"expected a {expected!r}, got {envelope.get('kind')!r}")
    body = envelope["body"]
    if not isinstance(body, dict):
        raise PoisonMessageError("malformed_envelope", "body is not a map")
    try:
        return model_type.model_validate(body, context=context)
    except ValidationError as exc:
        raise PoisonMessageError("invalid", summarize_validation_error(exc)) from exc
    except Exception as exc:  # a validator tripped on hostile input: still that input's fault
        raise PoisonMessageError("invalid", f"{type(exc).__name__}: {str(exc)[:200]}") from exc


def _unpack(data: bytes) -> dict[str, Any]:
    try:
        # timestamp=3 turns msgpack timestamps back into aware datetimes; strict_map_key refuses
        # non-string keys so a hostile payload cannot smuggle odd key types into pydantic.
        value = msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=True)
    except Exception as exc:  # ValueError, StackError, OverflowError (a timestamp past year 9999), ...
        raise PoisonMessageError("malformed", f"not valid msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, dict):
        raise PoisonMessageError("malformed_envelope", f"top level is {type(value).__name__}, not a map")
    return value


def summarize_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """One line naming the failing fields: fit for a DLQ header or an HTTP 4xx body."""
    parts = []
    for error in exc.errors()[:limit]:
        location = ".".join(str(p) for p in error["loc"]) or "<root>"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)
