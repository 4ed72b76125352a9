"""Each region's released interest counts as the insights service keeps them: summed per UTC day of the
release window, ``keep_days`` kept (by default nine: a week plus the days at either edge), every release
taken once."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

import numpy as np

from facet.insights.regional_counts import RegionCounts
from facet.privacy.settings import ReleasePrivacy

DAY_SECONDS = 86_400


class CountHistory:
    def __init__(self, regions: list[str], size: int, *, keep_days: int = 9,
                 remembered_releases: int = 100_000) -> None:
        self.regions, self.size, self.keep_days = regions, size, keep_days
        self._days: dict[str, dict[int, RegionCounts]] = {r: {} for r in regions}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remembered = remembered_releases
        self._spans: dict[str, dict[int, tuple[datetime, datetime]]] = {r: {} for r in regions}
        #: What each region's newest release says its statistics cost.
        self.budgets: dict[str, ReleasePrivacy] = {}

    def add(self, region: str, release_id: str, counts: np.ndarray, noise_std: float, window_start: datetime,
            window_end: datetime, budget: ReleasePrivacy) -> str | None:
        """None when kept; else why nothing changed (a bounded set of reasons, for a metric's label)."""
        if region not in self._days:
            return "unreported_region"
        if release_id in self._seen:
            return "duplicate"
        if len(counts) != self.size:
            return "wrong_shape"
        day = int(window_end.timestamp() // DAY_SECONDS)
        newest = max([day, *(d for held in self._days.values() for d in held)])
        if day <= newest - self.keep_days:
            return "too_old"
        self._seen[release_id] = None
        while len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        held = self._days[region].setdefault(day, RegionCounts(np.zeros(self.size, dtype=np.float32)))
        held.add(counts.astype(np.float32), noise_std)
        span = self._spans[region].get(day)
        self._spans[region][day] = (min(span[0], window_start), max(span[1], window_end)) if span else \
            (window_start, window_end)
        self.budgets[region] = budget
        self._expire(newest)
        return None

    def _expire(self, newest: int) -> None:
        for region, days in self._days.items():
            for old in [d for d in days if d <= newest - self.keep_days]:
                del days[old], self._spans[region][old]

    @property
    def regions_counted(self) -> list[str]:
        return [r for r in self.regions if self._days[r]]

    def window(self, region: str, days: int = 7) -> tuple[RegionCounts, tuple[datetime, datetime] | None]:
        """The sum of the region's releases over its newest ``days`` days (with its noise), and the span
        of the release windows summed."""
        held = self._days[region]
        total = RegionCounts(np.zeros(self.size, dtype=np.float32))
        if not held:
            return total, None
        newest = max(held)
        spans = []
        for day, counts in held.items():
            if day > newest - days:
                total.counts = total.counts + counts.counts
                total.noise_variance += counts.noise_variance
                total.releases += counts.releases
                spans.append(self._spans[region][day])
        return total, (min(s for s, _ in spans), max(e for _, e in spans))
