"""What the insights service knows: the products, the kept model versions' regional demand, and the
figures of the newest version (built once per version and catalogue size, then served from memory)."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
from facet.contracts import ProductRecord, RegionalStatistics
from facet.insights.count_history import CountHistory
from facet.insights.demand import regional_demand
from facet.insights.history import DemandHistory, Snapshot
from facet.insights.products import ProductFacts
from facet.insights.releases import stated_budget
from facet.insights.report import InsightsBuilder, ReportOptions, counted_figures
from facet.insights.statistics import CountSpace
from facet.insights.views import InsightsOverview
from facet.model.network import ModelConfig, SequenceRecommender
from facet.service.announcements import CatalogueFull
from facet_insights.metrics import BUILD_SECONDS, CATALOGUE_ITEMS, MODEL_VERSION


class InsightsState:
    def __init__(self, config: ModelConfig, regions: list[str], *, max_items: int, recent_versions: int,
                 options: ReportOptions, value_buckets: int = CountSpace.value_buckets,
                 statistics_window_days: int = 7) -> None:
        self.config = config
        self.regions = regions
        self.max_items = max_items
        self.options = options
        self.products = ProductFacts(config.feature_space())
        self.history = DemandHistory(recent=recent_versions)
        self.count_space = CountSpace(id_buckets=config.id_buckets, value_buckets=value_buckets)
        self.window_days = statistics_window_days
        self.counts = CountHistory(regions, self.count_space.size, keep_days=statistics_window_days + 2)
        self._model = SequenceRecommender(config)
        self._lock = threading.Lock()  # announcements (on the loop) against a load's catalogue copy
        self._build_lock = threading.Lock()  # a model load and a statistics rebuild, one at a time
        self._built: tuple[InsightsBuilder, InsightsOverview] | None = None

    def add_product(self, record: ProductRecord) -> int:
        with self._lock:
            known = self.products.catalogue.index.get(record.item_id)
            if known is not None:
                return known
            if len(self.products) >= self.max_items:
                raise CatalogueFull(f"the catalogue holds its maximum of {self.max_items} items")
            position = self.products.add(record.item_id, record.attributes, record.price, record.currency)
        CATALOGUE_ITEMS.set(len(self.products))
        return position

    def load_model(self, parameters: dict[str, torch.Tensor], version: int, epoch: int) -> None:
        """Derive every region's demand and every figure from a new version (in a worker thread), then
        swap them in as one reference: requests never wait for a build."""
        started = time.perf_counter()
        with self._lock:  # a consistent catalogue; announcements wait only for this copy
            items = self.products.tensors()
        self._model.load_state_dict(parameters)
        space = self.products.space
        demand = regional_demand(self._model, items, [space.region_bucket(r) for r in self.regions])
        with self._build_lock:
            self.history.add(Snapshot(version, epoch, time.time(), demand.astype(np.float32)))
            self._build()
        BUILD_SECONDS.observe(time.perf_counter() - started)
        MODEL_VERSION.set(version)

    def add_statistics(self, statistics: RegionalStatistics, counts: np.ndarray) -> str | None:
        """Keep a region's verified release (see :meth:`CountHistory.add`); figures change at :meth:`rebuild`."""
        released = statistics.counts
        with self._build_lock:
            return self.counts.add(statistics.region, released.release_id, counts, released.noise_std,
                                   released.window_start, released.window_end, stated_budget(released))

    def rebuild(self) -> None:
        """The figures again with the counts as they now are (once a model version is loaded)."""
        with self._build_lock:
            if self.history.latest is not None:
                self._build()

    def _build(self) -> None:
        with self._lock:
            counted = counted_figures(self.counts, self.products, self.regions, self.count_space,
                                      self.window_days)
        builder = InsightsBuilder(self.products, self.regions, self.history, self.options, counted)
        self._built = (builder, builder.overview())

    def builder(self) -> InsightsBuilder:
        if self._built is None:
            raise LookupError("no model version has been loaded yet")
        return self._built[0]

    def overview(self) -> InsightsOverview:
        if self._built is None:
            raise LookupError("no model version has been loaded yet")
        return self._built[1]
