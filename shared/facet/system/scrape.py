"""Read a service's Prometheus /metrics into plain numbers for the live view and the report."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def scrape(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    """Samples summed over labels: {'facet_aggregator_global_version': 12.0, ...}; {} when unreachable."""
    try:
        response = await client.get(url, timeout=2.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            totals[sample.name] += sample.value
    return dict(totals)


async def scrape_labelled(client: httpx.AsyncClient, url: str, name: str, label: str) -> dict[str, float]:
    try:
        response = await client.get(url, timeout=2.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    values: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                values[sample.labels.get(label, "")] += sample.value
    return dict(values)
