"""Prometheus metrics of the aggregator."""

from facet.service import metric_names as names
from prometheus_client import Counter, Gauge, Histogram

UPDATES_APPLIED = Counter(names.AGGREGATOR_UPDATES_APPLIED_TOTAL, "Updates mixed into the global model",
                          ["region"])
UPDATES_REJECTED = Counter(names.AGGREGATOR_UPDATES_REJECTED_TOTAL, "Updates rejected, by reason", ["reason"])
STALENESS = Histogram(names.AGGREGATOR_UPDATE_STALENESS, "Staleness of accepted updates (versions)",
                      buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55))
GLOBAL_VERSION = Gauge(names.AGGREGATOR_GLOBAL_VERSION, "Current global model version")
AGGREGATION_SECONDS = Histogram(names.AGGREGATOR_AGGREGATION_SECONDS, "Time to validate and apply one update")
BUFFER_FILL = Gauge(names.AGGREGATOR_BUFFER_FILL, "Updates waiting in the FedBuff buffer")
BROADCASTS = Counter(names.AGGREGATOR_BROADCASTS_TOTAL, "Global models broadcast", ["transport"])
CHECKPOINTS = Counter(names.AGGREGATOR_CHECKPOINTS_TOTAL, "Checkpoints written")
UPDATES_BOUNDED = Counter(names.AGGREGATOR_UPDATES_BOUNDED_TOTAL,
                          "Applied updates whose claimed samples or influence were cut down, by bound", ["bound"])
CHECKPOINT_FAILURES = Counter(names.AGGREGATOR_STATE_WRITE_FAILURES_TOTAL,
                              "Checkpoints or artifacts that could not be written (the last good state is kept)")
STATISTICS_FORWARDED = Counter(names.AGGREGATOR_STATISTICS_FORWARDED_TOTAL,
                               "Regional interest-count releases checked, signed and forwarded", ["region"])
STATISTICS_REJECTED = Counter(names.AGGREGATOR_STATISTICS_REJECTED_TOTAL,
                              "Interest-count releases not forwarded, by reason", ["reason"])
ZONE_FORWARDED = Counter(names.AGGREGATOR_ZONE_FORWARDED_TOTAL, "Zone tier: aggregated updates forwarded to the "
                         "global aggregator, by why (full buffer, waited too long, outbox resent)", ["reason"])
ZONE_FORWARDED_BYTES = Counter(names.AGGREGATOR_ZONE_FORWARDED_BYTES_TOTAL,
                               "Zone tier: payload bytes forwarded across the zone's boundary")
