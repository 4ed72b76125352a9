"""Noisy regional interest counts: what a regional trainer may publish about its shoppers beside its model
updates, under shopper-level differential privacy.

Each shopper active in a release window spreads one unit of interest evenly over the distinct items they
touched in it, and, separately for each counted attribute field, over those items' values: a vector over
hashed item buckets and hashed ``field=value`` buckets whose L2 norm is at most sqrt(1 + fields) whatever
the shopper did. That bound is the sensitivity, so nothing needs clipping; Gaussian noise of
``noise_multiplier × sensitivity`` goes on every coordinate. The domain is the hashing space, fixed and
data-independent, so a release does not reveal which items or values anybody touched. The cost of a series
of releases is Opacus' RDP accountant at sampling rate 1 (a :class:`~facet.privacy.settings.PrivacySettings`
with ``sample_rate=1``). Price bands are not counted: each region prices in its own currency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import zstandard

from facet.compression.codecs import bounded_zstd
from facet.errors import PoisonMessageError
from facet.model.features import stable_bucket

#: The attribute fields counted (price bands are not: each region prices in its own currency).
COUNTED_FIELDS = ("metal", "gem", "category", "color")
#: L2 norm bound of one shopper's contribution: 1 for items, 1 per counted field.
SENSITIVITY = math.sqrt(1 + len(COUNTED_FIELDS))
CODEC = "f16+zstd"


@dataclass(frozen=True)
class CountSpace:
    """The release's coordinates: the model's id buckets, then ``value_buckets`` for ``field=value``
    (a wide table of its own: 60 jewelry values in the model's 4,096 attribute rows collide a third of
    the time, and retail has hundreds of categories)."""

    id_buckets: int = 32_768
    value_buckets: int = 65_536

    @property
    def size(self) -> int:
        return self.id_buckets + self.value_buckets

    def value_bucket(self, field: str, value: str) -> int:
        return self.id_buckets + stable_bucket(f"{field}={value}", self.value_buckets)

    def item_values(self, values: dict[str, str | None]) -> list[int]:
        """An item's counted value buckets (unknown values are not counted)."""
        return [self.value_bucket(name, value) for name in COUNTED_FIELDS if (value := values.get(name))]


#: One shopper's touches in a window: (item bucket, that item's counted value buckets) per distinct item.
Touches = Sequence[tuple[int, Sequence[int]]]


def shopper_vector(touches: Touches) -> dict[int, float]:
    """One shopper's unit of interest over their distinct items and, per field, over those items' values,
    clipped to :data:`SENSITIVITY` (a no-op unless ``field=value`` buckets of different fields collide, which
    hashing cannot rule out): the bound holds whatever the events say."""
    if not touches:
        return {}
    share = 1.0 / len(touches)
    vector: dict[int, float] = {}
    for bucket, values in touches:
        vector[bucket] = vector.get(bucket, 0.0) + share
        for value in values:
            vector[value] = vector.get(value, 0.0) + share
    norm = math.sqrt(sum(v * v for v in vector.values()))
    if norm > SENSITIVITY:
        vector = {k: v * SENSITIVITY / norm for k, v in vector.items()}
    return vector


def interest_counts(shoppers: Iterable[Touches], space: CountSpace) -> np.ndarray:
    """[space.size] the sum of every shopper's :func:`shopper_vector`."""
    counts = np.zeros(space.size)
    for touches in shoppers:
        for coordinate, value in shopper_vector(touches).items():
            counts[coordinate] += value
    return counts


def encode_counts(counts: np.ndarray) -> bytes:
    """float16 (the noise dwarfs its rounding), under zstd."""
    clipped = np.clip(counts, -60_000, 60_000)  # float16's range; no real count per release comes near it
    return zstandard.ZstdCompressor(level=3).compress(clipped.astype("<f2").tobytes())


def decode_counts(payload: bytes, size: int) -> np.ndarray:
    """Exactly ``size`` float16 counts, bounded before anything is allocated; finite, or refused."""
    raw = bounded_zstd(payload, 2 * size)
    if len(raw) != 2 * size:
        raise PoisonMessageError("wrong_shape", f"{len(raw)} bytes of counts; expected {2 * size}")
    counts = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    if not np.isfinite(counts).all():
        raise PoisonMessageError("non_finite", "counts hold NaN or Inf")
    return counts
