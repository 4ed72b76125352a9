"""Read a service's Prometheus /metrics once into plain numbers for the live view and the report."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """The samples of one /metrics response (empty when the service did not answer)."""

    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def total(self, name: str) -> float:
        return sum(value for sample, _labels, value in self.samples if sample == name)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        values: dict[str, float] = defaultdict(float)
        for sample, labels, value in self.samples:
            if sample == name:
                values[labels.get(label, "")] += value
        return dict(values)


    def histograms(self, name: str, label: str) -> dict[str, list[tuple[float, float]]]:
        """Histogram ``name``'s cumulative buckets (upper bound, count) per value of ``label``, summed over
        the scrape's series (a region's replicas add up)."""
        merged: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        for sample, labels, value in self.samples:
            if sample == name + "_bucket":
                merged[labels.get(label, "")][float(labels["le"])] += value
        return {key: sorted(buckets.items()) for key, buckets in merged.items()}


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram, interpolated linearly inside its bucket as Prometheus'
    ``histogram_quantile`` does (the +Inf bucket answers with the largest finite bound); None when empty."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower_bound, lower_count = bound, count
    return lower_bound


async def scrape(client: httpx.AsyncClient, url: str) -> Scrape:
    try:
        response = await client.get(url, timeout=2.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return Scrape()
    return Scrape([(s.name, s.labels, s.value) for family in text_string_to_metric_families(response.text)
                   for s in family.samples])
