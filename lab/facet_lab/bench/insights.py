"""``facet bench insights``: do the insights derived from the federated model say what is true?

One time split: the federation (FedBuff, the same learners and aggregator as the services) trains on
the events before the cutoff; insights are derived from its final model exactly as the insights
service derives them (:mod:`facet.insights`); then they are checked against what only this benchmark
may look at:

- synthetic: the generator's planted regional tastes, turned into the same lifts (each region's demand
  from its planted affinity and the items' base popularity, shares per value over the mix);
- retail: category shares computed from the raw file per country (countries with enough shoppers);
- both: opportunities from A into B against what B actually bought after the cutoff, with "most popular
  in A" (raw counts, before the cutoff) as the baseline, drawn from the same pool (items not already
  established in B) so that only the ranking differs.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from facet.contracts import BehaviourEvent, EventType
from facet.evaluation.split import leave_last_out
from facet.federation.server import AggregationPolicy, Aggregator
from facet.federation.staleness import PolynomialStaleness
from facet.insights.demand import regional_demand
from facet.insights.lifts import FieldLifts, field_lifts, value_shares
from facet.insights.opportunities import candidates, opportunities
from facet.insights.products import ProductFacts
from facet.insights.regional_counts import EXPOSURE_SIGMAS, RegionCounts, counted_lifts, exposed_items
from facet.insights.releases import InterestWindow, StatisticsSettings, check_release, release
from facet.insights.statistics import CountSpace
from facet.model.network import ModelConfig, SequenceRecommender
from facet.privacy.accounting import spent_epsilon
from facet.workload.catalogue import CATEGORIES, METALS, default_regions, region_affinity
from facet.workload.generator import JewelryWorkload
from scipy.stats import spearmanr

from facet_lab.bench.federation import build_setup, run_async

PLANTED_FIELDS = ("metal", "gem", "category", "price_band")


@dataclass(frozen=True)
class InsightsOptions:
    rounds: int = 12
    local_steps: int = 8
    cutoff: float = 0.7
    #: The trainers' releases (their default: epsilon 2 per day in one daily release).
    statistics: StatisticsSettings = field(default_factory=StatisticsSettings)
    #: An item counts as already bought in a region when its noisy count stands this many noise sigmas
    #: clear of zero.
    exposure_sigmas: float = EXPOSURE_SIGMAS
    top_k: int = 20
    #: Retail: countries with at least this many shoppers, and the categories compared (largest first).
    min_shoppers: int = 50
    categories: int = 30
    seed: int = 0


def time_cutoff(events: Sequence[BehaviourEvent], share: float) -> tuple[list[BehaviourEvent], list[BehaviourEvent]]:
    ordered = sorted(events, key=lambda e: e.occurred_at)
    cut = int(len(ordered) * share)
    return ordered[:cut], ordered[cut:]


def train_federated(events: Sequence[BehaviourEvent], config: ModelConfig, options: InsightsOptions,
                    tick: Callable[[], None] = lambda: None) -> tuple[SequenceRecommender, dict[str, Any]]:
    """The final global model of a FedBuff run over ``events`` (the services' learner and aggregator)."""
    split = leave_last_out(events, config.feature_space())
    setup = build_setup(split, config, {}, seed=options.seed, local_steps=options.local_steps, max_tests=1000)
    policy = AggregationPolicy(mode="fedbuff", buffer_size=min(3, len(setup.regions)), server_lr=1.0,
                               staleness=PolynomialStaleness(exponent=0.5), max_staleness=1000, max_update_norm=1e6)
    budget = options.rounds * max(setup.round_time(r) for r in setup.regions)
    last: list[Aggregator] = []

    def keep(aggregator: Aggregator, *_: object) -> None:
        if not last:
            last.append(aggregator)

    trace = run_async(setup, policy, "fedbuff", budget, budget / 4, tick, observe=keep)
    model = SequenceRecommender(setup.config)
    model.load_state_dict(last[0].state.parameters)
    return model, {"config": setup.config, "ndcg10": trace.final["overall"]["ndcg10"], "updates": trace.updates,
                   "regions": setup.regions}


def products_of(events: Sequence[BehaviourEvent], config: ModelConfig,
                workload: JewelryWorkload | None = None) -> ProductFacts:
    """The product feed: the generator's own catalogue (USD prices) or each item as the file describes it."""
    products = ProductFacts(config.feature_space())
    if workload is not None:
        catalogue = workload.catalogue
        for index, item_id in enumerate(catalogue.item_ids):
            products.add(item_id, catalogue.attributes(index), catalogue.price_usd[index], "USD")
        return products
    for event in events:
        products.add(event.item_id, event.attributes, event.price, event.currency)
    return products


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def planted_demand(workload: JewelryWorkload, products: ProductFacts, regions: Sequence[str]) -> np.ndarray:
    """[R, N] each region's expected choice shares under the generator's planted tastes: its affinity for
    metal, gem, category and price, the items' base popularity, and the favourite category and metal each
    of its shoppers draws from the region's tastes (averaged exactly over those draws)."""
    catalogue = workload.catalogue
    profiles = {p.code: p for p in default_regions()}
    order = np.array([catalogue.index_of(i) for i in products.item_ids])
    popularity = np.log(np.asarray(catalogue.base_popularity))[order]
    category, metal = catalogue.array("category")[order], catalogue.array("metal")[order]
    rows = []
    for region in regions:
        profile = profiles[region]
        base = region_affinity(catalogue, profile, len(catalogue))[order] + popularity
        metal_odds = np.array([profile.metal_taste.get(m, 1.0) for m in METALS]) ** 1.5
        category_odds = np.array([profile.category_taste.get(c, 1.0) for c in CATEGORIES]) ** 1.5
        expected = np.zeros(len(order))
        for c, c_weight in enumerate(category_odds / category_odds.sum()):
            for m, m_weight in enumerate(metal_odds / metal_odds.sum()):
                logits = base + 1.2 * (category == c) + 1.0 * (metal == m)  # as the generator scores
                weights = np.exp(logits - logits.max())
                expected += c_weight * m_weight * weights / weights.sum()
        rows.append(expected)
    return np.stack(rows)


def compare_lifts(reported: dict[str, FieldLifts], truth: dict[str, FieldLifts], regions: Sequence[str],
                  fields: Sequence[str]) -> dict[str, Any]:
    per_field: dict[str, list[float]] = {}
    per_region: dict[str, float] = {}
    for row, region in enumerate(regions):
        values = []
        for name in fields:
            rho = spearman(reported[name].lifts[row], truth[name].lifts[row])
            per_field.setdefault(name, []).append(rho)
            values.append(rho)
        per_region[region] = float(np.nanmean(values))
    return {"mean": float(np.nanmean(list(per_region.values()))), "per_region": per_region,
            "per_field": {name: float(np.nanmean(v)) for name, v in per_field.items()}}


def restricted(lifts: FieldLifts, keep: Sequence[int]) -> FieldLifts:
    """Lifts over a subset of values (renormalised shares, the mix recomputed)."""
    shares = lifts.shares[:, keep]
    shares = shares / np.maximum(shares.sum(axis=1, keepdims=True), 1e-12)
    return FieldLifts(lifts.field, [lifts.values[i] for i in keep], shares, shares.mean(axis=0))


def noisy_counts(events: Sequence[BehaviourEvent], regions: Sequence[str], settings: StatisticsSettings,
                 space: CountSpace, item_bucket: Callable[[str], int],
                 seed: int) -> tuple[list[RegionCounts], int]:
    """Each region's releases over ``events`` as its trainer makes them, by the trainer's own code (window,
    release) on the events' clock, each checked and decoded as the aggregator and insights service do;
    summed per region. Intervals in which a region saw nobody release noise alone, as a running trainer
    does. Also: the most releases any region made."""
    rng = np.random.default_rng(seed)
    ordered = sorted((e for e in events if e.region in regions), key=lambda e: e.occurred_at)
    if not ordered:
        return [RegionCounts(np.zeros(space.size)) for _ in regions], 0
    now = [ordered[0].occurred_at.timestamp()]
    windows = {r: InterestWindow(settings, space, item_bucket, clock=lambda: now[0]) for r in regions}
    totals = {r: RegionCounts(np.zeros(space.size)) for r in regions}
    made = dict.fromkeys(regions, 0)
    interval = settings.privacy.release_seconds

    def close(region: str) -> None:
        opened = windows[region].close()
        released = release(opened, settings, space, rng)
        totals[region].add(check_release(released, space.id_buckets), released.noise_std)
        skipped = int((now[0] // interval) - (opened.end.timestamp() // interval))  # empty intervals since
        if skipped > 0:
            noise = released.noise_std * np.sqrt(skipped)
            totals[region].add(rng.normal(0.0, noise, space.size), noise)
        made[region] += 1 + max(skipped, 0)

    for event in ordered:
        now[0] = event.occurred_at.timestamp()
        for region, window in windows.items():
            if window.due:
                close(region)
        windows[event.region].add(event)
    for region in regions:
        close(region)
    return [totals[r] for r in regions], max(made.values())


def purchases_by_region(events: Sequence[BehaviourEvent], products: ProductFacts) -> dict[str, set[int]]:
    bought: dict[str, set[int]] = defaultdict(set)
    for event in events:
        index = products.catalogue.index.get(event.item_id)
        if event.event_type is EventType.PURCHASE and index is not None:
            bought[event.region].add(index)
    return bought


def popularity_by_region(events: Sequence[BehaviourEvent], products: ProductFacts) -> dict[str, np.ndarray]:
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(products)))
    for event in events:
        index = products.catalogue.index.get(event.item_id)
        if index is not None:
            counts[event.region][index] += 1
    return counts


def opportunity_precision(demand: np.ndarray, regions: Sequence[str], before: Sequence[BehaviourEvent],
                          after: Sequence[BehaviourEvent], products: ProductFacts, k: int,
                          exposed: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Precision@k of the model's opportunities and of "most popular in A", per ordered region pair."""
    bought = purchases_by_region(after, products)
    popular = popularity_by_region(before, products)
    eligible = np.zeros(len(products), dtype=bool)
    for counts in popular.values():
        eligible |= counts > 0  # pieces on sale before the cutoff: what a merchandiser could export
    model_hits, baseline_hits, pairs = [], [], {}
    for a, source in enumerate(regions):
        for b, target in enumerate(regions):
            if a == b or not bought.get(target):
                continue
            known = exposed[b] if exposed is not None else None
            predicted = [o.item for o in opportunities(demand, a, b, k, eligible=eligible,
                                                       established_in_target=known)]
            pool = candidates(demand, a, b, strong_share=1.0, eligible=eligible & (popular[source] > 0),
                              established_in_target=known)
            baseline = list(pool[np.argsort(-popular[source][pool], kind="stable")][:k])
            model_p = len(set(predicted) & bought[target]) / k
            baseline_p = len(set(baseline) & bought[target]) / k
            model_hits.append(model_p)
            baseline_hits.append(baseline_p)
            pairs[f"{source}->{target}"] = {"model": model_p, "most_popular_in_source": baseline_p}
    model_mean, baseline_mean = float(np.mean(model_hits)), float(np.mean(baseline_hits))
    return {"precision_model": model_mean, "precision_most_popular_in_source": baseline_mean,
            "ratio": model_mean / baseline_mean if baseline_mean > 0 else None, "pairs": pairs}


def retail_truth(events: Sequence[BehaviourEvent], products: ProductFacts, regions: Sequence[str]) -> FieldLifts:
    """Category shares and lifts per country from the raw purchases (inside this benchmark only)."""
    values, codes = products.codes("category")
    counts = np.zeros((len(regions), len(values)))
    row_of = {r: i for i, r in enumerate(regions)}
    for event in events:
        index = products.catalogue.index.get(event.item_id)
        if event.region in row_of and index is not None and codes[index] >= 0:
            counts[row_of[event.region], codes[index]] += 1
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return FieldLifts("category", values, shares, shares.mean(axis=0))


def shoppers_per_region(events: Sequence[BehaviourEvent]) -> Counter[str]:
    seen: dict[str, str] = {}
    for event in events:
        seen.setdefault(event.shopper_id, event.region)
    return Counter(seen.values())


def run_insights_benchmark(dataset: str, events: Sequence[BehaviourEvent], config: ModelConfig,
                           options: InsightsOptions, workload: JewelryWorkload | None = None,
                           tick: Callable[[], None] = lambda: None) -> dict[str, Any]:
    started = time.perf_counter()
    before, after = time_cutoff(events, options.cutoff)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model, federation = train_federated(before, config, options, tick)
    config = federation.pop("config")
    products = products_of(events if workload is None else [], config, workload)
    space = config.feature_space()
    result: dict[str, Any] = {"federation": federation, "events_before": len(before), "events_after": len(after)}
    summary: dict[str, Any] = {}
    statistics = options.statistics
    count_space = statistics.space(config.id_buckets)
    if workload is not None:
        regions = list(federation["regions"])
        demand = regional_demand(model, products.tensors(), [space.region_bucket(r) for r in regions])
        counts, releases = noisy_counts(before, regions, statistics, count_space, space.item_bucket, options.seed)
        from_model = field_lifts(demand, products, PLANTED_FIELDS)
        counted = counted_lifts(counts, products, count_space).lifts
        reported = {**from_model, **{k: v for k, v in counted.items() if k in PLANTED_FIELDS}}
        truth = field_lifts(planted_demand(workload, products, regions), products, PLANTED_FIELDS)
        comparison = compare_lifts(reported, truth, regions, PLANTED_FIELDS)
        summary["spearman_planted_synthetic"] = comparison["mean"]
        summary["spearman_planted_synthetic_model_only"] = compare_lifts(from_model, truth, regions,
                                                                         PLANTED_FIELDS)["mean"]
        raw = popularity_by_region(before, products)
        summary["spearman_planted_raw_counts_reference"] = compare_lifts(
            field_lifts(np.stack([raw[r] / max(raw[r].sum(), 1) for r in regions]), products, PLANTED_FIELDS),
            truth, regions, PLANTED_FIELDS)["mean"]
        result["planted"] = comparison
    else:
        shoppers = shoppers_per_region(before)
        regions = sorted((r for r, n in shoppers.items() if n >= options.min_shoppers), key=lambda r: -shoppers[r])
        demand = regional_demand(model, products.tensors(), [space.region_bucket(r) for r in regions])
        counts, releases = noisy_counts(before, regions, statistics, count_space, space.item_bucket, options.seed)
        truth_all = retail_truth(before, products, regions)
        largest = [int(i) for i in np.argsort(-truth_all.shares.sum(axis=0), kind="stable")[:options.categories]]
        values, codes = products.codes("category")
        category_from_model = FieldLifts("category", values, value_shares(demand, codes, len(values)),
                                         np.zeros(len(values)))
        counted_categories = counted_lifts(counts, products, count_space).lifts["category"]
        truth_categories = restricted(truth_all, largest)
        comparison = compare_lifts({"category": restricted(counted_categories, largest)},
                                   {"category": truth_categories}, regions, ["category"])
        summary["spearman_ground_truth_retail"] = comparison["mean"]
        summary["spearman_ground_truth_retail_model_only"] = compare_lifts(
            {"category": restricted(category_from_model, largest)}, {"category": truth_categories}, regions,
            ["category"])["mean"]
        result["ground_truth"] = {**comparison, "countries": {r: shoppers[r] for r in regions},
                                  "categories": truth_categories.values}
    exposed = [exposed_items(c, products, options.exposure_sigmas) for c in counts]
    precision = opportunity_precision(demand, regions, before, after, products, options.top_k, exposed)
    model_view = opportunity_precision(demand, regions, before, after, products, options.top_k)
    summary["opportunity_precision_at_20_ratio_model_exposure"] = model_view["ratio"]
    summary["epsilon_spent_by_insights"] = spent_epsilon(statistics.privacy, releases)
    # Per day: the period's epsilon spread over its days (a bound per day only when the period is a day).
    summary["epsilon_per_day_by_insights"] = statistics.privacy.epsilon * 86_400 / statistics.privacy.period_seconds
    summary["epsilon_per_period_by_insights"] = statistics.privacy.epsilon
    summary["statistics_period_days"] = statistics.privacy.period_seconds / 86_400
    summary["statistics_releases_per_region"] = releases
    summary["opportunity_precision_at_20_ratio"] = precision["ratio"]
    summary["opportunity_precision_at_20_model"] = precision["precision_model"]
    summary["opportunity_precision_at_20_most_popular"] = precision["precision_most_popular_in_source"]
    result["opportunities"] = precision
    result["seconds"] = time.perf_counter() - started
    result["options"] = options.__dict__
    return {"summary": summary, **result}
