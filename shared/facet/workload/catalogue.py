"""A synthetic jewelry catalogue and regional tastes: the non-IID structure the generator samples from.

Everything is drawn from a seeded numpy Generator, so a seed names one world.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facet.contracts import ItemAttributes

CATEGORIES = ("ring", "earring", "pendant", "necklace", "bracelet", "brooch")
CATEGORY_SHARE = (0.30, 0.30, 0.14, 0.10, 0.12, 0.04)
METALS = ("gold", "silver", "platinum", "rose-gold", "white-gold")
GEMS = ("none", "diamond", "sapphire", "ruby", "emerald", "pearl", "topaz", "fianit")
COLORS = ("yellow", "white", "red", "blue", "green", "pink")
GENDERS = ("f", "m", "u")
#: A gem implies its colour most of the time; "none" takes the metal's colour.
GEM_COLOR = {
    "diamond": "white", "sapphire": "blue", "ruby": "red", "emerald": "green",
    "pearl": "white", "topaz": "blue", "fianit": "white",
}
METAL_COLOR = {"gold": "yellow", "silver": "white", "platinum": "white", "rose-gold": "pink", "white-gold": "white"}
#: Median USD price multipliers: what makes a price band.
METAL_PRICE = {"gold": 3.0, "silver": 0.6, "platinum": 6.0, "rose-gold": 2.6, "white-gold": 3.4}
GEM_PRICE = {"none": 1.0, "diamond": 4.0, "sapphire": 2.2, "ruby": 2.4, "emerald": 2.6,
             "pearl": 1.4, "topaz": 1.3, "fianit": 0.8}
CATEGORY_PRICE = {"ring": 1.0, "earring": 0.9, "pendant": 0.8, "necklace": 1.4, "bracelet": 1.1, "brooch": 0.7}


@dataclass(frozen=True)
class RegionProfile:
    """How shoppers of one region differ: their share of traffic, tastes and money."""

    code: str
    currency: str
    usd_rate: float
    traffic_share: float
    metal_taste: dict[str, float]
    gem_taste: dict[str, float]
    category_taste: dict[str, float]
    price_level: float  # multiplies the catalogue's price: where the region's price band sits
    mobile_share: float


def default_regions() -> tuple[RegionProfile, ...]:
    """Seven regions: one large, several small, with clearly different metals, gems and budgets."""
    return (
        RegionProfile("us", "USD", 1.0, 0.42, {"white-gold": 3, "gold": 2, "platinum": 2},
                      {"diamond": 4, "sapphire": 1.5}, {"ring": 2, "earring": 1.3}, 1.4, 0.6),
        RegionProfile("eu", "EUR", 0.92, 0.18, {"silver": 3, "white-gold": 1.5},
                      {"none": 2, "pearl": 2, "topaz": 1.5}, {"earring": 2, "bracelet": 1.5}, 0.8, 0.55),
        RegionProfile("uk", "GBP", 0.79, 0.12, {"silver": 2, "rose-gold": 2.5},
                      {"emerald": 2, "pearl": 1.5}, {"necklace": 2, "pendant": 1.5}, 0.9, 0.5),
        RegionProfile("in", "INR", 83.0, 0.10, {"gold": 6, "rose-gold": 1.5},
                      {"ruby": 3, "emerald": 2.5, "none": 1.5}, {"necklace": 2.5, "bracelet": 2}, 1.2, 0.8),
        RegionProfile("jp", "JPY", 150.0, 0.08, {"platinum": 5, "silver": 1.5},
                      {"pearl": 5, "diamond": 1.5}, {"pendant": 2.5, "earring": 1.5}, 1.0, 0.75),
        RegionProfile("ae", "AED", 3.67, 0.06, {"gold": 5, "white-gold": 1.5},
                      {"diamond": 3, "ruby": 2}, {"bracelet": 2.5, "ring": 1.5}, 2.5, 0.7),
        RegionProfile("br", "BRL", 5.0, 0.04, {"gold": 2, "silver": 2},
                      {"fianit": 4, "topaz": 2.5}, {"earring": 2.5, "brooch": 2}, 0.5, 0.85),
    )


@dataclass
class Catalogue:
    """Item attributes as parallel arrays (fast to sample) plus an id per item."""

    item_ids: list[str] = field(default_factory=list)
    category: list[int] = field(default_factory=list)
    metal: list[int] = field(default_factory=list)
    gem: list[int] = field(default_factory=list)
    color: list[int] = field(default_factory=list)
    gender: list[int] = field(default_factory=list)
    price_usd: list[float] = field(default_factory=list)
    base_popularity: list[float] = field(default_factory=list)
    released_at: list[float] = field(default_factory=list)  # simulated seconds since the start

    _arrays: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.item_ids)

    def array(self, name: str) -> np.ndarray:
        """A numpy view of one attribute column, cached until the next item launch."""
        if self._arrays is None:
            self._arrays = {}
        if name not in self._arrays:
            self._arrays[name] = np.asarray(getattr(self, name))
        return self._arrays[name]

    def index_of(self, item_id: str) -> int | None:
        """The index of one of this catalogue's item ids (``sku-000042`` → 42), None for any other id."""
        if not item_id.startswith("sku-") or not item_id[4:].isdigit():
            return None
        index = int(item_id[4:])
        return index if index < len(self.item_ids) else None

    def attributes(self, index: int) -> ItemAttributes:
        return ItemAttributes(
            category=CATEGORIES[self.category[index]],
            metal=METALS[self.metal[index]],
            gem=GEMS[self.gem[index]],
            color=COLORS[self.color[index]],
            gender=GENDERS[self.gender[index]],
        )

    def add_items(self, rng: np.random.Generator, count: int, released_at: float) -> None:
        self._arrays = None
        for _ in range(count):
            index = len(self.item_ids)
            category = int(rng.choice(len(CATEGORIES), p=CATEGORY_SHARE))
            metal = int(rng.integers(len(METALS)))
            gem = int(rng.integers(len(GEMS)))
            gem_name = GEMS[gem]
            color_name = GEM_COLOR.get(gem_name, METAL_COLOR[METALS[metal]])
            if rng.random() < 0.15:  # coloured variants exist for most designs
                color_name = COLORS[int(rng.integers(len(COLORS)))]
            gender = int(rng.choice(3, p=(0.78, 0.12, 0.10)))
            median = 120.0 * METAL_PRICE[METALS[metal]] * GEM_PRICE[gem_name] * CATEGORY_PRICE[
                CATEGORIES[category]
            ]
            self.item_ids.append(f"sku-{index:06d}")
            self.category.append(category)
            self.metal.append(metal)
            self.gem.append(gem)
            self.color.append(COLORS.index(color_name))
            self.gender.append(gender)
            self.price_usd.append(round(float(median * rng.lognormal(0.0, 0.45)), 2))
            # Heavy-tailed popularity: a few best sellers, a long tail.
            self.base_popularity.append(float(rng.pareto(1.6) + 0.05))
            self.released_at.append(released_at)


def region_affinity(catalogue: Catalogue, region: RegionProfile, upto: int) -> np.ndarray:
    """Log-affinity of a region for the first ``upto`` items: taste for metal, gem, category, price."""
    metal = np.array([region.metal_taste.get(m, 1.0) for m in METALS])[catalogue.array("metal")[:upto]]
    gem = np.array([region.gem_taste.get(g, 1.0) for g in GEMS])[catalogue.array("gem")[:upto]]
    category = np.array([region.category_taste.get(c, 1.0) for c in CATEGORIES])[
        catalogue.array("category")[:upto]
    ]
    price = catalogue.array("price_usd")[:upto]
    # Prefer prices near the region's band: a Gaussian in log-price around its level.
    band = np.log(250.0 * region.price_level)
    price_fit = -0.5 * ((np.log(price) - band) / 0.9) ** 2
    return np.log(metal) * 1.3 + np.log(gem) * 1.1 + np.log(category) + price_fit
