"""The insights service's Prometheus metrics."""

from facet.service import metric_names as names
from prometheus_client import Counter, Gauge, Histogram

MODEL_VERSION = Gauge(names.INSIGHTS_MODEL_VERSION, "Global model version the insights describe")
CATALOGUE_ITEMS = Gauge(names.INSIGHTS_CATALOGUE_ITEMS, "Products known to the insights service")
BUILD_SECONDS = Histogram(names.INSIGHTS_BUILD_SECONDS, "Seconds to derive every figure from a new model version",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
REQUESTS = Counter(names.INSIGHTS_REQUESTS_TOTAL, "Insights requests, by view", ["view"])
ITEMS_REFUSED = Counter(names.INSIGHTS_ITEMS_REFUSED_TOTAL, "Product announcements or feed lines refused",
                        ["reason"])
STATISTICS_ACCEPTED = Counter(names.INSIGHTS_STATISTICS_ACCEPTED_TOTAL,
                              "Regional interest-count releases taken into the figures", ["region"])
STATISTICS_REJECTED = Counter(names.INSIGHTS_STATISTICS_REJECTED_TOTAL,
                              "Statistics records not taken, by reason", ["reason"])
