"""How items, attributes and regions become integer features, identically in every process.

Ids are hashed into fixed-size tables (the hashing trick) so that no central vocabulary is needed: every
regional trainer maps an item to the same row without asking anyone, and a brand-new item still gets
its content attributes. Hashes are stable across processes (blake2b, never Python's salted ``hash``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from facet.contracts import BehaviourEvent, ItemAttributes

ATTRIBUTE_FIELDS = ("category", "metal", "gem", "color", "gender", "brand")
#: Attribute slots per item: the content fields plus a price band (the last slot).
NUM_ITEM_FEATURES = len(ATTRIBUTE_FIELDS) + 1
PRICE_SLOT = len(ATTRIBUTE_FIELDS)


def stable_bucket(text: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % buckets


def price_band(price: float | None, currency: str | None) -> str:
    """Half-octave log price band within a currency: 'USD:13' and so on; '?' when unknown."""
    if price is None or price <= 0:
        return "?"
    return f"{currency or '?'}:{int(2 * math.log2(price))}"


@dataclass(frozen=True)
class FeatureSpace:
    id_buckets: int = 32_768
    attribute_buckets: int = 4_096
    region_buckets: int = 64
    #: Regions with a row of their own (the first rows, in this order); any other region hashes into the
    #: rest. Hashing alone put "us" and "in" in one row of 64, so two markets shared one embedding.
    regions: tuple[str, ...] = ()

    def item_bucket(self, item_id: str) -> int:
        return stable_bucket("item/" + item_id, self.id_buckets)

    def region_bucket(self, region: str) -> int:
        if region in self.regions:
            return self.regions.index(region)
        reserved = len(self.regions)
        return reserved + stable_bucket("region/" + region, self.region_buckets - reserved)

    def attribute_codes(
        self, attributes: ItemAttributes | None, price: float | None, currency: str | None
    ) -> list[int]:
        values = [getattr(attributes, name, None) if attributes else None for name in ATTRIBUTE_FIELDS]
        tokens = [f"{name}={value or '?'}" for name, value in zip(ATTRIBUTE_FIELDS, values, strict=True)]
        tokens.append("price=" + price_band(price, currency))
        return [stable_bucket(token, self.attribute_buckets) for token in tokens]


@dataclass
class ItemCatalogue:
    """Items known to one process: id → dense index, with hashed id and attribute features.

    The catalogue is product data, not shopper behaviour, so it may be shared freely; each trainer and
    recommender builds its own from the events it sees (and brand-new items as they are announced).
    """

    space: FeatureSpace = field(default_factory=FeatureSpace)
    index: dict[str, int] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)
    _buckets: list[int] = field(default_factory=list)
    _attributes: list[list[int]] = field(default_factory=list)
    _frozen: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def add(
        self, item_id: str, attributes: ItemAttributes | None, price: float | None, currency: str | None
    ) -> int:
        known = self.index.get(item_id)
        if known is not None:
            return known
        position = len(self.item_ids)
        self.index[item_id] = position
        self.item_ids.append(item_id)
        self._buckets.append(self.space.item_bucket(item_id))
        self._attributes.append(self.space.attribute_codes(attributes, price, currency))
        self._frozen = None
        return position

    def add_event(self, event: BehaviourEvent) -> int:
        return self.add(event.item_id, event.attributes, event.price, event.currency)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(id buckets [N], attribute codes [N, F]) as int64, cached until the next add."""
        if self._frozen is None:
            buckets = np.asarray(self._buckets, dtype=np.int64)
            attributes = np.asarray(self._attributes, dtype=np.int64).reshape(-1, NUM_ITEM_FEATURES)
            self._frozen = (buckets, attributes)
        return self._frozen
