"""A region's training data grouped by shopper, the unit DP-SGD samples and clips."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from facet.model.examples import PAD, Windows, make_windows


@dataclass(frozen=True)
class ShopperWindows:
    """Training windows with the shopper each belongs to: ``owners[w]`` in ``0..shoppers-1``."""

    windows: Windows
    owners: np.ndarray
    shoppers: int

    def __post_init__(self) -> None:
        if len(self.owners) != len(self.windows):
            raise ValueError("one owner per window")

    @property
    def samples(self) -> int:
        return self.windows.samples

    def windows_of(self, shoppers: np.ndarray, limit: int, rng: np.random.Generator) -> tuple[Windows, np.ndarray]:
        """The windows of ``shoppers`` (at most ``limit`` each, a random choice where they have more) and,
        per window, the position of its shopper in ``shoppers``."""
        starts, ends = self._bounds
        rows: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for position, shopper in enumerate(shoppers):
            own = np.arange(starts[shopper], ends[shopper])
            if len(own) > limit:
                own = np.sort(rng.choice(own, limit, replace=False))
            rows.append(own)
            owners.append(np.full(len(own), position, dtype=np.int64))
        chosen = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return self.windows.subset(chosen), (np.concatenate(owners) if owners else chosen)

    def by_size(self, shoppers: np.ndarray, limit: int) -> np.ndarray:
        """``shoppers`` ordered by how many windows they contribute (at most ``limit``), then by their longest
        window: chunks cut from this order pad little. Only the compute changes (each shopper's gradient is
        their own, whichever chunk computes it), not what is sampled or clipped."""
        starts, ends = self._bounds
        counts = np.minimum(ends[shoppers] - starts[shoppers], limit)
        return shoppers[np.lexsort((self._longest[shoppers], counts))]

    @cached_property
    def _longest(self) -> np.ndarray:
        """Each shopper's longest window (predictions)."""
        lengths = (self.windows.targets != PAD).sum(axis=1)
        longest = np.zeros(self.shoppers, dtype=np.int64)
        np.maximum.at(longest, self.owners, lengths)
        return longest

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Windows are stored grouped by owner: each shopper's [start, end) rows (once per pool, not per
        chunk of every step)."""
        counts = np.bincount(self.owners, minlength=self.shoppers)
        ends = np.cumsum(counts)
        return ends - counts, ends


def shopper_windows(sequences: Sequence[tuple[int, Sequence[int]]], max_history: int) -> ShopperWindows:
    """Cut each shopper's (region bucket, items) sequence into windows, remembering whose they are.
    Shoppers with fewer than two items make no window and are not counted."""
    kept = [(region, items) for region, items in sequences if len(items) >= 2]
    windows = make_windows(kept, max_history)
    per_shopper = [(len(items) - 2) // max_history + 1 for _region, items in kept]
    owners = np.repeat(np.arange(len(kept), dtype=np.int64), per_shopper)
    return ShopperWindows(windows, owners, len(kept))
