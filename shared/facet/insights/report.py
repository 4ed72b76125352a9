"""Build every insights figure from the products and the kept model versions: pure, so the service,
the benchmark and the tests compute them one way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from facet.insights.count_history import CountHistory
from facet.insights.history import DemandHistory, Snapshot
from facet.insights.lifts import FieldLifts, field_lifts, taste_similarity
from facet.insights.opportunities import opportunities
from facet.insights.products import ProductFacts
from facet.insights.regional_counts import CountedLifts, counted_lifts, exposed_items
from facet.insights.statistics import CountSpace
from facet.insights.trends import rising
from facet.insights.views import (
    FieldLiftsView,
    InsightsOverview,
    LiftCell,
    OpportunitiesView,
    OpportunityView,
    Provenance,
    RegionInsights,
    RisingEntry,
    RisingView,
    SimilarityView,
    StatisticsProvenance,
)

DAY, WEEK = 86_400.0, 7 * 86_400.0


@dataclass(frozen=True)
class ReportOptions:
    top_k: int = 20
    rising_k: int = 10
    overview_opportunities: int = 5
    strong_share: float = 0.1
    established_share: float = 0.1


def label_of(products: ProductFacts, index: int) -> str:
    parts = [products.values[name][index] for name in ("metal", "gem", "category")]
    return " ".join(p for p in parts if p != "?") or products.item_ids[index]


def _provenance(latest: Snapshot, compared: int, statistics: StatisticsProvenance | None) -> Provenance:
    return Provenance(model_version=latest.version, model_epoch=latest.epoch,
                      loaded_at=datetime.fromtimestamp(latest.at, UTC), versions_compared=compared,
                      epsilon_spent=statistics.epsilon_per_period if statistics else 0.0, statistics=statistics)


@dataclass(frozen=True)
class CountedFigures:
    """What the regions' noisy counts say over the last week: the counted fields' lifts (with the noise's
    standard deviation) and the items each region already buys."""

    lifts: CountedLifts
    exposed: list[np.ndarray]
    provenance: StatisticsProvenance


def counted_figures(counts: CountHistory, products: ProductFacts, regions: list[str], space: CountSpace,
                    days: int = 7) -> CountedFigures | None:
    """None until every reported region has released counts (a mix missing a region would skew every lift)."""
    if not regions or any(r not in counts.regions_counted for r in regions):
        return None
    windows = [counts.window(r, days) for r in regions]
    held = [w for w, _ in windows]
    spans = [s for _, s in windows if s is not None]
    lifts = counted_lifts(held, products, space)
    budget = max((counts.budgets[r] for r in regions), key=lambda b: b.epsilon / b.period_seconds)
    provenance = StatisticsProvenance(
        epsilon_per_period=budget.epsilon, delta=budget.delta, period_seconds=budget.period_seconds,
        window_start=min(s for s, _ in spans), window_end=max(e for _, e in spans),
        releases=sum(w.releases for w in held), fields=sorted(lifts.lifts))
    return CountedFigures(lifts, [exposed_items(w, products) for w in held], provenance)


class InsightsBuilder:
    """One build of every figure for the newest model version (the service caches one per version)."""

    def __init__(self, products: ProductFacts, regions: list[str], history: DemandHistory,
                 options: ReportOptions | None = None, counted: CountedFigures | None = None) -> None:
        latest = history.latest
        if latest is None:
            raise LookupError("no model version loaded yet")
        self.products, self.regions, self.history = products, regions, history
        self.options = options or ReportOptions()
        self.items = min(len(products), latest.demand.shape[1])
        self.latest = latest
        recent = history.recent_snapshots()
        self.demands = [s.over(self.items) for s in recent]
        self.demand = self.demands[-1]
        self.lifts_by_version = [field_lifts(d, products) for d in self.demands]
        self.counted = counted if counted is not None and len(counted.exposed[0]) >= self.items else None
        #: The newest figures: counted fields from the counts where there are any, the rest from the model.
        self.lifts: dict[str, FieldLifts] = {**self.lifts_by_version[-1],
                                             **(self.counted.lifts.lifts if self.counted else {})}
        self.provenance = _provenance(latest, len(recent), self.counted.provenance if self.counted else None)

    # ---- per region -------------------------------------------------------------------------------
    def region(self, region: str) -> RegionInsights:
        row = self.regions.index(region)
        views = []
        for name, lifts in self.lifts.items():
            counted = self.counted is not None and name in self.counted.lifts.lifts
            if self.counted is not None and counted:
                spread = self.counted.lifts.lift_std[name][row]
            else:
                spread = _spread([version[name].lifts[row] for version in self.lifts_by_version if name in version])
            views.append(FieldLiftsView(field=name, source="counts" if counted else "model", cells=[
                LiftCell(value=value, share=float(lifts.shares[row, i]), mix_share=float(lifts.mix[i]),
                         lift=float(lifts.lifts[row, i]), lift_spread=float(spread[i]))
                for i, value in enumerate(lifts.values)]))
        rising_views = {name: self._rising(row, window) for name, window in (("day", DAY), ("week", WEEK))}
        return RegionInsights(region=region, provenance=self.provenance, lifts=views, rising=rising_views)

    def _rising(self, row: int, window: float) -> RisingView:
        before = self.history.at_or_before(self.latest.at - window)
        if before is None or before.version == self.latest.version:
            return RisingView(window_requested_s=window, window_covered_s=0.0, since_version=None, items=[],
                              attributes=[])
        then = before.over(self.items)
        items = [RisingEntry(key=self.products.item_ids[r.index], label=label_of(self.products, r.index),
                             share_before=r.share_before, share_now=r.share_now, growth=r.growth)
                 for r in rising(then[row], self.demand[row], self.options.rising_k)]
        then_lifts = field_lifts(then, self.products)
        attributes: list[RisingEntry] = []
        for name, now in self.lifts_by_version[-1].items():  # the model against itself, never counts
            old = then_lifts[name]
            for r in rising(old.shares[row], now.shares[row], self.options.rising_k):
                attributes.append(RisingEntry(key=f"{name}={now.values[r.index]}", label=now.values[r.index],
                                              share_before=r.share_before, share_now=r.share_now,
                                              growth=r.growth))
        attributes.sort(key=lambda e: -e.growth)
        return RisingView(window_requested_s=window, window_covered_s=self.latest.at - before.at,
                          since_version=before.version, items=items, attributes=attributes[: self.options.rising_k])

    # ---- across regions -----------------------------------------------------------------------------
    def similarity(self) -> SimilarityView:
        # The newest figures (counted fields from counts), with the model's spread over versions.
        matrices = [taste_similarity(lifts) for lifts in self.lifts_by_version]
        spread = np.std(np.stack(matrices), axis=0) if len(matrices) > 1 else np.zeros_like(matrices[-1])
        return SimilarityView(provenance=self.provenance, regions=self.regions,
                              matrix=np.round(taste_similarity(self.lifts), 4).tolist(),
                              spread=np.round(spread, 4).tolist())

    def opportunities(self, source: str, target: str, k: int | None = None) -> OpportunitiesView:
        a, b = self.regions.index(source), self.regions.index(target)
        bought = self.counted.exposed[b][: self.items] if self.counted else None
        found = opportunities(self.demand, a, b, k or self.options.top_k, strong_share=self.options.strong_share,
                              established_share=self.options.established_share, established_in_target=bought)
        lifts_over_versions = [d[b] * self.items for d in self.demands]
        views = [OpportunityView(item_id=self.products.item_ids[o.item], label=label_of(self.products, o.item),
                                 strength_in_source=o.strength_in_source, expected_lift=o.expected_lift,
                                 expected_lift_spread=float(np.std([lift[o.item] for lift in lifts_over_versions])))
                 for o in found]
        return OpportunitiesView(provenance=self.provenance, source=source, target=target, items=views)

    def overview(self) -> InsightsOverview:
        pairs = [self.opportunities(a, b, self.options.overview_opportunities)
                 for a in self.regions for b in self.regions if a != b]
        return InsightsOverview(provenance=self.provenance, regions=self.regions, items=self.items,
                                region_insights=[self.region(r) for r in self.regions],
                                similarity=self.similarity(), opportunities=pairs)


def _spread(rows: list[np.ndarray]) -> np.ndarray:
    return np.std(np.stack(rows), axis=0) if len(rows) > 1 else np.zeros_like(rows[-1])
