"""Writes deploy/grafana/facet-dashboard.json: the panels (title, PromQL) live here, in one place.

Run `python deploy/grafana/dashboard.py` after changing a panel; a test checks the JSON is current and
that every metric it names is exported by some service.
"""

from __future__ import annotations

import json
from pathlib import Path

PANELS: list[tuple[str, str, str]] = [
    # (title, PromQL, unit)
    ("Events/s accepted by ingest, per region", "sum by (region) (rate(facet_ingest_events_accepted_total[1m]))",
     "ops"),
    ("Events rejected by ingest, per reason", "sum by (reason) (rate(facet_ingest_events_rejected_total[5m]))", "ops"),
    ("Trainer consumer lag, per region", "sum by (region) (facet_trainer_consumer_lag)", "short"),
    ("Trainer samples/s, per region", "sum by (region) (rate(facet_trainer_samples_total[1m]))", "ops"),
    ("Global model version", "max(facet_aggregator_global_version)", "short"),
    ("Updates applied/s, per region", "sum by (region) (rate(facet_aggregator_updates_applied_total[5m]))", "ops"),
    ("Updates rejected, per reason", "sum by (reason) (increase(facet_aggregator_updates_rejected_total[15m]))",
     "short"),
    ("Update staleness (p50, p95)",
     "histogram_quantile(0.95, sum by (le) (rate(facet_aggregator_update_staleness_bucket[5m])))", "short"),
    ("Bytes per update (p50)",
     "histogram_quantile(0.5, sum by (le, region) (rate(facet_trainer_update_bytes_bucket[5m])))", "bytes"),
    ("Compression ratio, per region", "avg by (region) (facet_trainer_compression_ratio)", "short"),
    ("Online NDCG@10, per region", "avg by (region) (facet_recommender_online_ndcg10)", "percentunit"),
    ("Recommendation latency p99",
     "histogram_quantile(0.99, sum by (le) (rate(facet_recommender_request_seconds_bucket[5m])))", "s"),
    ("Messages dead-lettered, per reason", "sum by (reason) (increase(facet_dead_lettered_total[15m]))", "short"),
]


def dashboard() -> dict[str, object]:
    panels = []
    for index, (title, expression, unit) in enumerate(PANELS):
        panels.append({
            "id": index + 1,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": expression, "datasource": {"type": "prometheus", "uid": "prometheus"}}],
        })
    return {
        "uid": "facet-overview",
        "title": "Facet: federated jewelry recommendations",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "tags": ["facet"],
        "panels": panels,
    }


def main() -> None:
    target = Path(__file__).with_name("facet-dashboard.json")
    target.write_text(json.dumps(dashboard(), indent=2) + "\n")


if __name__ == "__main__":
    main()
