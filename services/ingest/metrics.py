"""Prometheus metrics of the ingest gateway."""

from facet.service import metric_names as names
from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter(names.INGEST_EVENTS_ACCEPTED_TOTAL, "Events written to Kafka", ["region"])
EVENTS_REJECTED = Counter(names.INGEST_EVENTS_REJECTED_TOTAL, "Events refused, by reason", ["reason"])
REQUESTS = Counter(names.INGEST_REQUESTS_TOTAL, "Ingest requests by status code", ["status"])
REQUEST_SECONDS = Histogram(names.INGEST_REQUEST_SECONDS, "Ingest request latency",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
IN_FLIGHT = Gauge(names.INGEST_IN_FLIGHT_EVENTS, "Events sent but not yet acknowledged by Kafka")
