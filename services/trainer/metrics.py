"""Prometheus metrics of a regional trainer."""

from prometheus_client import Counter, Gauge, Histogram

SAMPLES = Counter("facet_trainer_samples_total", "Next-item examples trained on", ["region"])
SAMPLES_PER_SECOND = Gauge("facet_trainer_samples_per_second", "Training throughput of the last update", ["region"])
EVENTS = Counter("facet_trainer_events_total", "Events consumed", ["region"])
UPDATES_SENT = Counter("facet_trainer_updates_sent_total", "Updates acknowledged by Kafka", ["region"])
UPDATE_BYTES = Histogram("facet_trainer_update_bytes", "Bytes per update payload", ["region"],
                         buckets=(1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7))
COMPRESSION_RATIO = Gauge("facet_trainer_compression_ratio", "Raw float32 bytes / payload bytes", ["region"])
LOCAL_LOSS = Gauge("facet_trainer_local_loss", "Mean training loss since the last update", ["region"])
BASE_VERSION = Gauge("facet_trainer_base_version", "Global version the trainer builds on", ["region"])
STALENESS_AT_SEND = Gauge("facet_trainer_staleness_at_send", "Newest known version minus base at send time",
                          ["region"])
CONSUMER_LAG = Gauge("facet_trainer_consumer_lag", "Events not yet read (from the fetch highwater)",
                     ["region", "partition"])
DP_EPSILON = Gauge("facet_trainer_dp_epsilon", "Differential-privacy epsilon spent so far", ["region"])
WINDOW_SHOPPERS = Gauge("facet_trainer_window_shoppers", "Shoppers held in the training window", ["region"])
UPDATE_RAW_BYTES = Counter("facet_trainer_update_raw_bytes_total", "Bytes the same updates would take as float32",
                           ["region"])
