"""Prometheus metrics of the aggregator."""

from prometheus_client import Counter, Gauge, Histogram

UPDATES_APPLIED = Counter("facet_aggregator_updates_applied_total", "Updates mixed into the global model",
                          ["region"])
UPDATES_REJECTED = Counter("facet_aggregator_updates_rejected_total", "Updates rejected, by reason", ["reason"])
STALENESS = Histogram("facet_aggregator_update_staleness", "Staleness of accepted updates (versions)",
                      buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55))
GLOBAL_VERSION = Gauge("facet_aggregator_global_version", "Current global model version")
AGGREGATION_SECONDS = Histogram("facet_aggregator_aggregation_seconds", "Time to validate and apply one update")
BUFFER_FILL = Gauge("facet_aggregator_buffer_fill", "Updates waiting in the FedBuff buffer")
BROADCASTS = Counter("facet_aggregator_broadcasts_total", "Global models broadcast", ["transport"])
CHECKPOINTS = Counter("facet_aggregator_checkpoints_total", "Checkpoints written")
UPDATES_BOUNDED = Counter("facet_aggregator_updates_bounded_total",
                          "Applied updates whose claimed samples or influence were cut down, by bound", ["bound"])
CHECKPOINT_FAILURES = Counter("facet_aggregator_state_write_failures_total",
                              "Checkpoints or artifacts that could not be written (the last good state is kept)")
