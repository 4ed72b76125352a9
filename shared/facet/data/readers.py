"""Stream the two real datasets in ``../shared/data`` as :class:`BehaviourEvent` objects.

Both files are purchase logs, so every row becomes a ``purchase`` event. Quirks handled here (see the
data README): the jewelry file has no header, a leading blank line, two row layouts (13 and 11 fields),
and exact duplicate rows; the retail file has cancellations (invoice numbers starting with ``C``),
rows without a customer id, and non-positive quantities or prices.

Regions. The retail file names each customer's country: region = a slug of the country. The jewelry
file has no country at all, so its regions are **simulated**: ``taste`` (the default) assigns each
shopper to a region by the metal and gem of their first purchase, which makes regions non-IID by taste;
``hash`` assigns shoppers uniformly by a hash of their id (IID), for comparison.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from facet.contracts import BehaviourEvent, EventType, ItemAttributes

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"
JEWELRY_FILE = "jewelry_purchases.csv.gz"
RETAIL_FILE = "online_retail.csv.gz"

#: Simulated jewelry regions by taste: (metal, gem) of the first purchase → region.
_TASTE_REGIONS: dict[str, str] = {
    "gold": "us",
    "silver": "eu",
    "platinum": "jp",
    "red": "in",
    "white": "uk",
}
_GEM_REGIONS: dict[str, str] = {"diamond": "ae", "fianit": "eu", "pearl": "jp", "topaz": "br", "sapphire": "in"}
_HASH_REGIONS = ("us", "eu", "uk", "in", "jp", "ae", "br")


def data_path(name: str, data_dir: Path | None = None) -> Path:
    return (data_dir or DEFAULT_DATA_DIR) / name


def _stable_fraction(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") / 2**32


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.strip().lower()).strip("-")
    return slug[:32] if slug and slug[0].isalpha() else f"x-{slug}"[:32]


def read_jewelry(
    path: Path | None = None, *, split: Literal["taste", "hash"] = "taste"
) -> Iterator[BehaviourEvent]:
    """Jewelry order lines as purchase events, with a simulated region per shopper."""
    path = path or data_path(JEWELRY_FILE)
    seen_rows: set[int] = set()
    region_of: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="ascii", newline="") as handle:
        for row in csv.reader(handle):
            if not row:
                continue  # the leading blank line
            fingerprint = hash(tuple(row))
            if fingerprint in seen_rows:
                continue  # exact duplicate rows
            seen_rows.add(fingerprint)
            if len(row) == 13:
                when, order, product, _qty, _cat_id, alias, brand, price, user, gender, color, metal, gem = row
            elif len(row) == 11:  # fields 5-7 collapsed into one: price is field 6, user field 7
                when, order, product, _qty, _collapsed, price, user = row[:7]
                alias = brand = gender = color = metal = gem = ""
            else:
                continue
            if not user or not product:
                continue
            if user not in region_of:
                region_of[user] = _jewelry_region(user, metal, gem, color, split)
            category = alias.split(".", 1)[1] if alias.startswith("jewelry.") else (alias or None)
            yield BehaviourEvent(
                event_id=f"j{order}-{product}",
                occurred_at=datetime.strptime(when, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC),
                region=region_of[user],
                storefront="jewelry-web",
                shopper_id=f"j{user}",
                session_id=f"o{order}",
                item_id=f"p{product}",
                event_type=EventType.PURCHASE,
                price=float(price) if price else None,
                currency="USD" if price else None,
                attributes=ItemAttributes(
                    category=category or None,
                    metal=metal or None,
                    gem=gem or None,
                    color=color or None,
                    gender=gender or None,
                    brand=brand or None,
                ),
            )


def _jewelry_region(user: str, metal: str, gem: str, color: str, split: str) -> str:
    if split == "hash":
        return _HASH_REGIONS[int(_stable_fraction(user) * len(_HASH_REGIONS))]
    # Taste split: most shoppers land in the region of their first purchase's gem or metal; a fifth are
    # spread by hash so every region also sees some of every taste.
    if _stable_fraction("mix/" + user) < 0.2:
        return _HASH_REGIONS[int(_stable_fraction(user) * len(_HASH_REGIONS))]
    return _GEM_REGIONS.get(gem) or _TASTE_REGIONS.get(metal) or _TASTE_REGIONS.get(color) or "us"


def read_retail(path: Path | None = None) -> Iterator[BehaviourEvent]:
    """Online-retail invoice lines as purchase events; region = slug of the customer's country."""
    path = path or data_path(RETAIL_FILE)
    with gzip.open(path, "rb") as raw:
        handle = io.TextIOWrapper(raw, encoding="latin-1", newline="")
        for line_number, row in enumerate(csv.DictReader(handle)):
            invoice, customer = row["InvoiceNo"], row["CustomerID"].strip()
            if invoice.startswith("C") or not customer:
                continue  # cancellations and anonymous rows carry no usable shopper signal
            try:
                quantity, price = int(row["Quantity"]), float(row["UnitPrice"])
            except ValueError:
                continue
            if quantity <= 0 or price <= 0:
                continue
            stock = re.sub(r"[^A-Za-z0-9]", "", row["StockCode"])
            if not stock:
                continue
            yield BehaviourEvent(
                event_id=f"r{line_number}",
                occurred_at=datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC),
                region=_slug(row["Country"]),
                storefront="retail-web",
                shopper_id=f"c{customer.split('.')[0]}",
                session_id=f"i{invoice}",
                item_id=f"s{stock}",
                event_type=EventType.PURCHASE,
                price=min(price, 10_000_000.0),
                currency="GBP",
                query=None,
                attributes=ItemAttributes(category=_retail_category(row["Description"])),
            )


def _retail_category(description: str) -> str | None:
    """The last word of the description (HOLDER, LANTERN, BAG…) is a usable coarse content attribute."""
    words = re.findall(r"[A-Z]{3,}", description.upper())
    return words[-1].lower()[:64] if words else None
