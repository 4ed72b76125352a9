"""Noisy counts accumulated per region, and what insights read from them: shares per attribute value
with their noise, and each item's exposure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facet.insights.lifts import FieldLifts
from facet.insights.products import ProductFacts
from facet.insights.statistics import COUNTED_FIELDS, CountSpace


@dataclass
class RegionCounts:
    """The sum of one region's releases over a window, and the variance of the noise in that sum."""

    counts: np.ndarray
    noise_variance: float = 0.0
    releases: int = 0

    def add(self, counts: np.ndarray, noise_std: float) -> None:
        self.counts = self.counts + counts
        self.noise_variance += noise_std**2
        self.releases += 1

    @property
    def noise_std(self) -> float:
        return float(np.sqrt(self.noise_variance))


@dataclass(frozen=True)
class CountedLifts:
    lifts: dict[str, FieldLifts]
    #: [R, V] standard deviation of each lift from the noise alone (delta method).
    lift_std: dict[str, np.ndarray] = field(default_factory=dict)


def counted_lifts(regions: list[RegionCounts], products: ProductFacts, space: CountSpace) -> CountedLifts:
    """Lifts of the counted fields from the regions' noisy counts (negative counts read as 0)."""
    lifts: dict[str, FieldLifts] = {}
    stds: dict[str, np.ndarray] = {}
    for name in COUNTED_FIELDS:
        values, _ = products.codes(name)
        if not values:
            continue
        buckets = [space.value_bucket(name, v) for v in values]
        raw = np.stack([np.maximum(r.counts[buckets], 0.0) for r in regions])
        totals = np.maximum(raw.sum(axis=1, keepdims=True), 1e-9)
        shares = raw / totals
        mix = shares.mean(axis=0)
        lifts[name] = FieldLifts(name, values, shares, mix)
        noise = np.array([[r.noise_std] for r in regions])
        stds[name] = (noise / totals) / np.maximum(mix, 1e-9)
    return CountedLifts(lifts, stds)


def item_exposure(region: RegionCounts, products: ProductFacts) -> np.ndarray:
    """[N] the region's noisy interest in each product (its item bucket's count)."""
    buckets, _ = products.catalogue.arrays()
    return region.counts[buckets]


#: An item counts as already bought in a region when its count stands this many noise deviations above 0.
EXPOSURE_SIGMAS = 2.0


def exposed_items(region: RegionCounts, products: ProductFacts, sigmas: float = EXPOSURE_SIGMAS) -> np.ndarray:
    """bool [N]: the items whose interest in the region stands clear of the noise."""
    return item_exposure(region, products) > sigmas * region.noise_std
