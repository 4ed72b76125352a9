"""Prometheus metrics of a regional trainer."""

from facet.service import metric_names as names
from prometheus_client import Counter, Gauge, Histogram

SAMPLES = Counter(names.TRAINER_SAMPLES_TOTAL, "Next-item examples trained on", ["region"])
SAMPLES_PER_SECOND = Gauge(names.TRAINER_SAMPLES_PER_SECOND, "Training throughput of the last update", ["region"])
EVENTS = Counter(names.TRAINER_EVENTS_TOTAL, "Events consumed", ["region"])
UPDATES_SENT = Counter(names.TRAINER_UPDATES_SENT_TOTAL, "Updates acknowledged by Kafka", ["region"])
UPDATE_BYTES = Histogram(names.TRAINER_UPDATE_BYTES, "Bytes per update payload", ["region"],
                         buckets=(1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7))
COMPRESSION_RATIO = Gauge(names.TRAINER_COMPRESSION_RATIO, "Raw float32 bytes / payload bytes", ["region"])
LOCAL_LOSS = Gauge(names.TRAINER_LOCAL_LOSS, "Mean training loss since the last update", ["region"])
BASE_VERSION = Gauge(names.TRAINER_BASE_VERSION, "Global version the trainer builds on", ["region"])
STALENESS_AT_SEND = Gauge(names.TRAINER_STALENESS_AT_SEND, "Newest known version minus base at send time",
                          ["region"])
CONSUMER_LAG = Gauge(names.TRAINER_CONSUMER_LAG, "Events not yet read (from the fetch highwater)",
                     ["region", "partition"])
DP_EPSILON = Gauge(names.TRAINER_DP_EPSILON, "Shopper-level epsilon spent in the current budget period",
                   ["region"])
DP_EPSILON_BUDGET = Gauge(names.TRAINER_DP_EPSILON_BUDGET, "Shopper-level epsilon allowed per period", ["region"])
DP_STEPS = Counter(names.TRAINER_DP_STEPS, "DP-SGD steps taken", ["region"])
DP_BUDGET_EXHAUSTED = Gauge(names.TRAINER_DP_BUDGET_EXHAUSTED,
                            "1 while the period's budget is spent and the region contributes nothing", ["region"])
DP_ROUNDS_SKIPPED = Counter(names.TRAINER_DP_ROUNDS_SKIPPED,
                            "Update rounds under DP that trained nothing (paced, budget spent, too few shoppers)",
                            ["region", "reason"])
WINDOW_SHOPPERS = Gauge(names.TRAINER_WINDOW_SHOPPERS, "Shoppers held in the training window", ["region"])
UPDATE_RAW_BYTES = Counter(names.TRAINER_UPDATE_RAW_BYTES_TOTAL, "Bytes the same updates would take as float32",
                           ["region"])
STATISTICS_RELEASES = Counter(names.TRAINER_STATISTICS_RELEASES_TOTAL,
                              "Noisy interest-count releases closed (each rides on the next update, or goes alone)",
                              ["region"])
STATISTICS_SENT_ALONE = Counter(names.TRAINER_STATISTICS_SENT_ALONE_TOTAL,
                                "Releases sent without a delta (nothing trained since the last one)",
                                ["region"])
STATISTICS_DROPPED = Counter(names.TRAINER_STATISTICS_DROPPED_TOTAL, "Releases not published",
                             ["region", "reason"])
STATISTICS_EPSILON = Gauge(names.TRAINER_STATISTICS_EPSILON,
                           "Shopper-level epsilon the interest counts spent in the current period", ["region"])
STATISTICS_REFUSED_SHOPPERS = Counter(names.TRAINER_STATISTICS_REFUSED_SHOPPERS_TOTAL,
                                      "Shoppers left out of a full interest window", ["region"])
EVENT_FRESHNESS = Histogram(names.TRAINER_EVENT_FRESHNESS, "Seconds from an event's acceptance at ingest to the "
                            "first broadcast model whose training included it", ["region"],
                            buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600))
FRESHNESS_FORGOTTEN = Counter(names.TRAINER_FRESHNESS_FORGOTTEN_TOTAL,
                              "Sent updates no broadcast included before newer ones pushed them out", ["region"])

