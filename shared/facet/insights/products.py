"""The product facts insights are stated in: each item's attribute values (metal, gem, category, colour,
price band). Product data, not shopper behaviour, so it may be held centrally; it also builds the model
features of the same items, so the model and the figures always describe one catalogue."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import ValidationError

from facet.contracts import ItemAttributes, ProductRecord
from facet.model.features import FeatureSpace, ItemCatalogue, price_band
from facet.model.network import ItemTensors

#: The attribute fields a merchandiser asks about, in the order pages and tables show them.
INSIGHT_FIELDS = ("metal", "gem", "category", "color", "price_band")
UNKNOWN = "?"


@dataclass
class ProductFacts:
    """Items with their attribute values, in the order of the model catalogue built beside them."""

    space: FeatureSpace = field(default_factory=FeatureSpace)
    catalogue: ItemCatalogue = field(init=False)
    values: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in INSIGHT_FIELDS})

    def __post_init__(self) -> None:
        self.catalogue = ItemCatalogue(self.space)

    def __len__(self) -> int:
        return len(self.catalogue)

    @property
    def item_ids(self) -> list[str]:
        return self.catalogue.item_ids

    def add(self, item_id: str, attributes: ItemAttributes | None, price: float | None,
            currency: str | None) -> int:
        known = self.catalogue.index.get(item_id)
        if known is not None:
            return known
        position = self.catalogue.add(item_id, attributes, price, currency)
        for name in INSIGHT_FIELDS:
            value: str | None = price_band(price, currency) if name == "price_band" else \
                getattr(attributes, name, None) if attributes else None
            self.values[name].append(value or UNKNOWN)
        return position

    def tensors(self) -> ItemTensors:
        buckets, attributes = self.catalogue.arrays()
        return torch.from_numpy(buckets), torch.from_numpy(attributes)

    def codes(self, name: str, items: int | None = None) -> tuple[list[str], np.ndarray]:
        """The distinct known values of one field (sorted) and each item's index among them (-1: unknown),
        over the first ``items`` items (all by default)."""
        column = self.values[name][:items]
        labels = sorted({value for value in column if value != UNKNOWN}, key=_natural)
        position = {value: index for index, value in enumerate(labels)}
        return labels, np.array([position.get(value, -1) for value in column], dtype=np.int64)


def _natural(label: str) -> tuple[object, ...]:
    """'USD:9' before 'USD:13': numbers inside a label compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label))


#: A feed line longer than this is refused before it is parsed.
MAX_FEED_LINE_BYTES = 16 * 1024


def read_feed(lines: Iterable[bytes]) -> Iterator[ProductRecord | str]:
    """Each line of a JSON-lines feed as a record, or a refusal reason (the feed never stops for a line)."""
    for line in lines:
        if not line.strip():
            continue
        if len(line) > MAX_FEED_LINE_BYTES:
            yield "oversize"
            continue
        try:
            yield ProductRecord.model_validate_json(line)
        except ValidationError:
            yield "invalid"
