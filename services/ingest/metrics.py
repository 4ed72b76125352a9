"""Prometheus metrics of the ingest gateway."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter("facet_ingest_events_accepted_total", "Events written to Kafka", ["region"])
EVENTS_REJECTED = Counter("facet_ingest_events_rejected_total", "Events refused, by reason", ["reason"])
REQUESTS = Counter("facet_ingest_requests_total", "Ingest requests by status code", ["status"])
REQUEST_SECONDS = Histogram("facet_ingest_request_seconds", "Ingest request latency",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
IN_FLIGHT = Gauge("facet_ingest_in_flight_events", "Events sent but not yet acknowledged by Kafka")
