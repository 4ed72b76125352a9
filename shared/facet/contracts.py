"""The messages that cross service boundaries, as pydantic v2 models.

Only these shapes travel on Kafka. Field limits are part of the contract: a value outside them is a
poison message, never a crash.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from facet.config import validate_region

ShortId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")]
RegionCode = Annotated[str, Field(min_length=2, max_length=32)]

#: Upper bound on one update's payload; larger updates are rejected before they are decoded.
MAX_UPDATE_PAYLOAD_BYTES = 64 * 1024 * 1024
#: Upper bound on inline model parameters; larger models travel as an artifact pointer.
MAX_INLINE_MODEL_BYTES = 256 * 1024 * 1024


class TimeWindow(BaseModel):
    """Which timestamps are plausible. Anything read from outside is checked against one, so a hostile
    date (year 1, year 9999, an offset that overflows UTC) is a validation error, never an exception.

    The default is absolute (no storefront Facet serves has data from before 2000; a clock a day ahead
    is broken); a service narrows it around now by passing ``{"time_window": ...}`` as the validation
    context (ingest: ``max_event_age``).
    """

    model_config = ConfigDict(frozen=True)

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future_skew: timedelta = timedelta(days=1)

    @classmethod
    def around_now(cls, max_age: timedelta, max_future_skew: timedelta) -> TimeWindow:
        return cls(earliest=datetime.now(UTC) - max_age, max_future_skew=max_future_skew)

    def check(self, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a timezone")
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+05:00 has no UTC equivalent
            raise ValueError("timestamp is out of range") from None
        if value < self.earliest:
            raise ValueError(f"timestamp {value.isoformat()} is before {self.earliest.isoformat()}")
        latest = datetime.now(UTC) + self.max_future_skew
        if value > latest:
            raise ValueError(f"timestamp {value.isoformat()} is after {latest.isoformat()}")
        return value


DEFAULT_TIME_WINDOW = TimeWindow()


def _plausible(value: datetime, info: ValidationInfo) -> datetime:
    context: Any = info.context
    window = context.get("time_window") if isinstance(context, dict) else None
    return (window if isinstance(window, TimeWindow) else DEFAULT_TIME_WINDOW).check(value)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class EventType(StrEnum):
    VIEW = "view"
    SEARCH = "search"
    CART = "cart"
    PURCHASE = "purchase"


class ItemAttributes(_Frozen):
    """Content attributes of a jewelry item: what lets a brand-new item be ranked."""

    category: str | None = Field(default=None, max_length=64)
    metal: str | None = Field(default=None, max_length=64)
    gem: str | None = Field(default=None, max_length=64)
    color: str | None = Field(default=None, max_length=64)
    gender: str | None = Field(default=None, max_length=16)
    brand: str | None = Field(default=None, max_length=64)


class _Priced(_Frozen):
    """A record with an optional ``price`` and its ``currency`` (fields of the subclass): the price finite,
    and never without its currency."""

    @field_validator("price", check_fields=False)
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("price must be finite")
        return value

    @model_validator(mode="after")
    def _currency_with_price(self) -> _Priced:
        if getattr(self, "price", None) is not None and getattr(self, "currency", None) is None:
            raise ValueError("price needs a currency")
        return self


class ProductRecord(_Priced):
    """One product, as a seller's feed lists it or an announcement (``POST /v1/items``) states it: product
    data only, never behaviour."""

    item_id: ShortId
    attributes: ItemAttributes
    price: float | None = Field(default=None, ge=0, le=10_000_000)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class BehaviourEvent(_Priced):
    """One shopper action on a storefront. Shopper and session ids are pseudonymous."""

    event_id: ShortId = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime
    region: RegionCode
    storefront: ShortId
    shopper_id: ShortId
    session_id: ShortId
    item_id: ShortId
    event_type: EventType
    price: float | None = Field(default=None, ge=0, le=10_000_000)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    device: str | None = Field(default=None, max_length=32)
    query: str | None = Field(default=None, max_length=256)
    attributes: ItemAttributes | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return validate_region(value)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime, info: ValidationInfo) -> datetime:
        return _plausible(value, info)


class TrainingMetrics(_Frozen):
    loss: float
    samples_per_second: float = Field(ge=0)
    steps: int = Field(ge=0)

    @field_validator("loss", "samples_per_second")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("metrics must be finite")
        return value


#: Upper bound on one release of interest counts (float16 over at most 2^22 coordinates, compressed).
MAX_COUNTS_PAYLOAD_BYTES = 16 * 1024 * 1024


class InterestCounts(_Frozen):
    """One region's shopper-level DP interest counts for one window (:mod:`facet.insights.statistics`):
    float16 counts over ``id_buckets + value_buckets`` hashed coordinates, each with Gaussian noise of
    ``noise_std``. The trainer states what the release costs; a receiver can check the shape and that the
    noise is at least what that stated budget needs (:func:`facet.insights.releases.check_release`)."""

    release_id: ShortId
    window_start: datetime
    window_end: datetime
    id_buckets: int = Field(ge=16, le=2**21)
    value_buckets: int = Field(ge=16, le=2**21)
    noise_std: float = Field(gt=0, le=1e6)
    #: The release budget it is paid from: epsilon per period at delta.
    epsilon_per_period: float = Field(gt=0, le=100)
    delta: float = Field(gt=0, lt=1e-3)
    period_seconds: float = Field(gt=0, le=366 * 86_400)
    releases_per_period: int = Field(ge=1, le=10_000)
    codec: str = Field(pattern=r"^f16\+zstd$")
    payload: bytes = Field(max_length=MAX_COUNTS_PAYLOAD_BYTES)

    @field_validator("window_start", "window_end")
    @classmethod
    def _window(cls, value: datetime, info: ValidationInfo) -> datetime:
        return _plausible(value, info)

    @field_validator("noise_std", "epsilon_per_period", "period_seconds")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> InterestCounts:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class RegionalStatistics(_Frozen):
    """Interest counts the aggregator accepted from a trainer (inside its signed update) and forwards,
    signed with the model key, to the statistics topic: consumers trust only the aggregator."""

    region: RegionCode
    trainer_id: ShortId
    update_id: ShortId
    counts: InterestCounts
    forwarded_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: Ed25519 (hex) by the aggregator's model key.
    signature: str | None = Field(default=None, max_length=256)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return validate_region(value)

    @field_validator("forwarded_at")
    @classmethod
    def _forwarded(cls, value: datetime, info: ValidationInfo) -> datetime:
        return _plausible(value, info)


#: A zone's step may be scaled up at most this much (a member's coefficient as small as 1/10,000 of a step).
MAX_ZONE_HEADROOM = 10_000.0


class ZoneStep(_Frozen):
    """What a zone tier's forwarded update says about the step it carries (:mod:`facet.federation.zones`):
    the running mean of its members' sample counts that the step's coefficients were measured against, and
    by how much the step may be scaled before one of its members counts for more than a whole step."""

    member_reference: float = Field(gt=0, le=1_000_000_000)
    headroom: float = Field(ge=1, le=MAX_ZONE_HEADROOM)


class ModelUpdate(_Frozen):
    """A trainer's compressed delta against one global version, or (``num_samples`` 0, no payload) only a
    statistics release: a region whose shoppers went quiet after its window closed still releases it."""

    update_id: ShortId
    trainer_id: ShortId
    region: RegionCode
    base_version: int = Field(ge=0)
    num_samples: int = Field(ge=0, le=1_000_000_000)
    metrics: TrainingMetrics
    codec: str = Field(min_length=1, max_length=128)
    payload: bytes = Field(max_length=MAX_UPDATE_PAYLOAD_BYTES)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: The region's noisy interest counts for a window that closed since its last release, if any.
    statistics: InterestCounts | None = None
    #: Set by a zone tier only: how its pre-weighted step is to be re-based onto the fleet's sample mean.
    zone_step: ZoneStep | None = None
    #: HMAC-SHA256 (hex) over the signed fields, keyed per trainer; checked by the aggregator.
    signature: str | None = Field(default=None, max_length=256)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return validate_region(value)

    @field_validator("created_at")
    @classmethod
    def _created(cls, value: datetime, info: ValidationInfo) -> datetime:
        return _plausible(value, info)

    @model_validator(mode="after")
    def _delta_or_release(self) -> ModelUpdate:
        if self.num_samples == 0 and (self.payload or self.statistics is None):
            raise ValueError("an update without samples carries no delta and only a statistics release")
        return self

    @property
    def carries_delta(self) -> bool:
        return self.num_samples > 0


class ArtifactPointer(_Frozen):
    """Where to fetch a model too large for one message. The sha256 is checked before loading; the
    reader bounds ``size_bytes`` by the size of the model it expects before it downloads anything."""

    uri: str = Field(min_length=1, max_length=2048)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1, le=MAX_INLINE_MODEL_BYTES)


class GlobalModel(_Frozen):
    """A versioned global model broadcast. Parameters are safetensors bytes, or a pointer to them.

    ``epoch`` is the aggregator's generation: a fresh or restored aggregator starts a newer one, so a
    fleet that saw version N of an older generation follows it even from a lower version. Consumers
    order broadcasts by (epoch, version) and act only on those the aggregator signed (Ed25519).
    """

    model_name: ShortId
    epoch: int = Field(default=0, ge=0, le=2**62)
    version: int = Field(ge=0, le=2**62)
    parameters: bytes | None = Field(default=None, max_length=MAX_INLINE_MODEL_BYTES)
    artifact: ArtifactPointer | None = None
    contributing_updates: tuple[ShortId, ...] = Field(default=(), max_length=100_000)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: Ed25519 signature (hex) by the aggregator's model key over :func:`facet.federation.model_signing`.
    signature: str | None = Field(default=None, pattern=r"^[0-9a-f]{128}$")

    @field_validator("created_at")
    @classmethod
    def _created(cls, value: datetime, info: ValidationInfo) -> datetime:
        return _plausible(value, info)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> GlobalModel:
        if (self.parameters is None) == (self.artifact is None):
            raise ValueError("exactly one of parameters and artifact must be set")
        return self

    @property
    def generation(self) -> tuple[int, int]:
        """The order consumers follow: a newer epoch wins over any version of an older one."""
        return (self.epoch, self.version)
