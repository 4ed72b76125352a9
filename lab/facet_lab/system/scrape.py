"""Read a service's Prometheus /metrics once into plain numbers for the live view and the report."""

from __future__ import annotations

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


async def scrape(client: httpx.AsyncClient, url: str) -> Scrape:
    try:
        response = await client.get(url, timeout=2.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return Scrape()
    return Scrape([(s.name, s.labels, s.value) for family in text_string_to_metric_families(response.text)
                   for s in family.samples])
