"""``facet eval --cold-start``: how well launches get recommended, against content baselines.

1. Split by time (:func:`facet.evaluation.launches.launch_split`): items first seen after the cutoff are
   a new collection; test cases are every next step after it, cold (a new item) or warm.
2. Choose the cold-start policy on a validation split made the same way *inside* the training period,
   with its own model: the most launch exposure (cold HR@10) whose overall NDCG@10 stays within
   ``budget`` of the same model without any cold-start machinery. The test period is never looked at.
3. Train on everything before the cutoff and score the test cases with and without the chosen policy,
   next to the content baselines, all on the same cases.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from facet.evaluation.datasets import DatasetName, load_events
from facet.evaluation.launches import LaunchSplit, launch_split
from facet.evaluation.metrics import hit_rate, ndcg, summarize, target_ranks
from facet.evaluation.scoring import SCORE_BATCH, Scorer, policy_target_ranks, train_on
from facet.evaluation.split import TestCase
from facet.model.coldstart import ColdStartPolicy, cold_lift, launch_trend, prepare_cold_items
from facet.model.network import ModelConfig, SequenceRecommender
from facet.model.training import catalogue_tensors
from rich.console import Console
from rich.table import Table

from facet_lab.bench.common import write_result
from facet_lab.coldstart_baselines import COLD_START_BASELINES
from facet_lab.evaluate import DATASET_EPOCHS, DATASET_MODELS

#: Share of steps after the cutoff: synthetic's default run launches ~50 items in its last 20 %, the
#: jewelry store ~550 in its last 15 % (five months).
TEST_SHARE: dict[DatasetName, float] = {DatasetName.SYNTHETIC: 0.2, DatasetName.JEWELRY: 0.15,
                                        DatasetName.RETAIL: 0.15}
OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
TREND_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
NEIGHBOURS = (0, 20)
#: Launch slots are searched with neighbour rows, the milder offsets and trends, and these margins.
SLOTS = (1, 2, 3)
SLOT_MARGINS = (1.0, 2.0, 4.0)
SLOT_OFFSETS = (0.0, 0.5, 1.0)
SLOT_TREND_WEIGHTS = (0.5, 1.0, 2.0)
#: Validation cases scored per policy (a seeded sample keeps the search to a few minutes).
MAX_VALIDATION_CASES = 6_000
Policies = list[ColdStartPolicy]


def policy_grid() -> Policies:
    plain = [ColdStartPolicy(neighbours=n, cold_offset=o, trend_weight=w, launch_slots=0)
             for n, o, w in itertools.product(NEIGHBOURS, OFFSETS, TREND_WEIGHTS)]
    slotted = [ColdStartPolicy(neighbours=max(NEIGHBOURS), cold_offset=o, trend_weight=w, launch_slots=s,
                               launch_slot_margin=m)
               for o, w, s, m in itertools.product(SLOT_OFFSETS, SLOT_TREND_WEIGHTS, SLOTS, SLOT_MARGINS)]
    return plain + slotted


def policy_ranks(model: SequenceRecommender, launch: LaunchSplit, cases: Sequence[TestCase],
                 policies: Policies) -> dict[ColdStartPolicy, np.ndarray]:
    """Each policy's 0-based target ranks on ``cases``; the model scores once per neighbour setting, the
    launch trend once per batch, and the policies that differ only in their launch slots share one set
    of scores and one sort."""
    items = catalogue_tensors(launch.split.catalogue)
    space = model.config.feature_space()
    targets = np.asarray([case.target for case in cases])
    ranks: dict[ColdStartPolicy, list[np.ndarray]] = {policy: [] for policy in policies}
    ready = {n: prepare_cold_items(model, items, launch.new_items, ColdStartPolicy(neighbours=n, cold_offset=0,
                                                                                  trend_weight=0))
             for n in sorted({p.neighbours for p in policies})}
    for start in range(0, len(cases), SCORE_BATCH):
        part = cases[start : start + SCORE_BATCH]
        histories, regions = [c.history for c in part], [space.region_bucket(c.region) for c in part]
        trend = launch_trend(launch.recent_interactions(part), launch.new_items)
        for neighbours, model_ready in ready.items():
            base = model_ready.rank(histories, regions).numpy()
            lifts: dict[tuple[float, float], list[ColdStartPolicy]] = {}
            for policy in (p for p in policies if p.neighbours == neighbours):
                lifts.setdefault((policy.cold_offset, policy.trend_weight), []).append(policy)
            for same_scores in lifts.values():
                scores = base + cold_lift(launch.new_items, same_scores[0], trend)
                order = (torch.argsort(torch.from_numpy(scores), dim=1, descending=True, stable=True)
                         if any(p.launch_slots for p in same_scores) else None)
                for policy in same_scores:
                    ranks[policy].append(policy_target_ranks(scores, launch.new_items, policy,
                                                             targets[start : start + SCORE_BATCH], order))
    return {policy: np.concatenate(parts) if parts else np.zeros(0) for policy, parts in ranks.items()}


def baseline_ranks(scorer: Scorer, cases: Sequence[TestCase]) -> np.ndarray:
    targets = np.asarray([case.target for case in cases])
    parts = [target_ranks(scorer(cases[i : i + SCORE_BATCH]), targets[i : i + SCORE_BATCH])
             for i in range(0, len(cases), SCORE_BATCH)]
    return np.concatenate(parts) if parts else np.zeros(0)


def choose_policy(ranks: dict[ColdStartPolicy, np.ndarray], cold: np.ndarray, budget: float) -> tuple[
    ColdStartPolicy, list[dict[str, Any]]
]:
    """The policy with the best cold HR@10 whose overall NDCG@10 is within ``budget`` of no policy."""
    plain = ndcg(ranks[ColdStartPolicy.off()])
    scored = [(policy, ndcg(r), hit_rate(r[cold])) for policy, r in ranks.items()]
    allowed = [row for row in scored if row[1] >= (1 - budget) * plain]
    best = max(allowed, key=lambda row: (row[2], row[1]))[0]
    table = [{"policy": p.model_dump(), "overall_ndcg10": n, "cold_hr10": h} for p, n, h in scored]
    return best, table


def run_cold_start_eval(dataset: str, json_path: Path, *, epochs: int | None, seed: int, budget: float,
                        console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    name = DatasetName(dataset)
    started = time.perf_counter()
    config: ModelConfig = DATASET_MODELS[name]
    epochs = epochs or DATASET_EPOCHS[name]
    events = load_events(name, seed=seed + 7)
    launch = launch_split(events, config.feature_space(), test_share=TEST_SHARE[name])
    console.print(f"split: {len(launch.split.tests)} test steps, {len(launch.cold_cases)} to new items "
                  f"({int(launch.new_items.sum())} launched)")

    # -- choose the policy inside the training period ----------------------------------------------
    earlier = [e for e in events if e.occurred_at.timestamp() < launch.cutoff]
    validation = launch_split(earlier, config.feature_space(), test_share=TEST_SHARE[name])
    rng = np.random.default_rng(seed)
    val_cases = validation.split.tests
    if len(val_cases) > MAX_VALIDATION_CASES:
        val_cases = [val_cases[i] for i in sorted(rng.choice(len(val_cases), MAX_VALIDATION_CASES, replace=False))]
    with console.status("training the validation model"):
        val_model, val_seconds = train_on(validation.split, list(validation.split.train), config, epochs, seed)
    val_ranks = policy_ranks(val_model, validation, val_cases, policy_grid())
    policy, val_table = choose_policy(val_ranks, np.asarray([c.cold_item for c in val_cases]), budget)
    console.print(f"policy chosen on validation ({len(val_cases)} cases, "
                  f"{sum(c.cold_item for c in val_cases)} cold): {policy.model_dump()}")

    # -- the test period ---------------------------------------------------------------------------
    with console.status("training the model on everything before the cutoff"):
        model, seconds = train_on(launch.split, list(launch.split.train), config, epochs, seed)
    cold_cases = launch.cold_cases
    sets = {"cold": cold_cases, "warm": launch.warm_sample(len(cold_cases), seed), "overall": launch.split.tests}
    # The test period's own trade-offs around the chosen policy (reported, never used for the choice).
    curve = [policy.model_copy(update={"cold_offset": o}) for o in OFFSETS]
    slot_curve = [policy.model_copy(update={"launch_slots": n}) for n in (0, *SLOTS)]
    default = ColdStartPolicy()  # what the recommender serves unless configured otherwise
    scored = {ColdStartPolicy.off(), policy, default, *curve, *slot_curve}
    results: dict[str, dict[str, Any]] = {"model": {}, "model_without_coldstart": {}, "model_default_policy": {},
                                          "baselines": {}}
    test_curve: dict[str, list[dict[str, Any]]] = {}
    test_slot_curve: dict[str, list[dict[str, Any]]] = {}
    for label, cases in sets.items():
        ranks = policy_ranks(model, launch, cases, sorted(scored, key=lambda p: p.model_dump_json()))
        results["model"][label] = summarize(ranks[policy])
        results["model_without_coldstart"][label] = summarize(ranks[ColdStartPolicy.off()])
        results["model_default_policy"][label] = summarize(ranks[default])
        test_curve[label] = [{"cold_offset": p.cold_offset, **summarize(ranks[p])} for p in curve]
        test_slot_curve[label] = [{"launch_slots": p.launch_slots, **summarize(ranks[p])} for p in slot_curve]
        for baseline, build in COLD_START_BASELINES.items():
            results["baselines"].setdefault(baseline, {})[label] = summarize(baseline_ranks(build(launch), cases))
    best_baseline = max(results["baselines"], key=lambda b: results["baselines"][b]["cold"]["hr10"])
    cold_baseline = results["baselines"][best_baseline]["cold"]["hr10"]
    summary = {
        "dataset": name.value,
        "cold_cases": len(cold_cases),
        "hr10_cold_model": results["model"]["cold"]["hr10"],
        "hr10_cold_content_baseline": cold_baseline,
        "best_content_baseline": best_baseline,
        "hr10_cold_ratio_vs_content_baseline": results["model"]["cold"]["hr10"] / max(cold_baseline, 1e-12),
        "hr10_cold_model_without_coldstart": results["model_without_coldstart"]["cold"]["hr10"],
        "hr10_warm_model": results["model"]["warm"]["hr10"],
        "ndcg10_overall_ratio_vs_without_coldstart": results["model"]["overall"]["ndcg10"] / max(
            results["model_without_coldstart"]["overall"]["ndcg10"], 1e-12),
        "policy": policy.model_dump(),
        # The recommender's default policy on the same cases (fixed in advance, not chosen on this split).
        "hr10_cold_model_default_policy": results["model_default_policy"]["cold"]["hr10"],
        "ndcg10_overall_ratio_default_policy": results["model_default_policy"]["overall"]["ndcg10"] / max(
            results["model_without_coldstart"]["overall"]["ndcg10"], 1e-12),
    }
    payload = write_result(json_path, summary, results=results, test_offset_curve=test_curve,
                           test_slot_curve=test_slot_curve,
                           validation={"cases": len(val_cases), "budget": budget, "grid": val_table,
                                       "training_seconds": val_seconds},
                           data={"test_steps": len(launch.split.tests), "launched_items": int(launch.new_items.sum()),
                                 "items": len(launch.split.catalogue), "test_share": TEST_SHARE[name]},
                           training_seconds=seconds, epochs=epochs, model_config=config.model_dump(),
                           total_seconds=time.perf_counter() - started)
    _print(console, results, summary, json_path)
    return payload


def _print(console: Console, results: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    table = Table(title=f"facet eval --cold-start: {summary['dataset']} ({summary['cold_cases']} launch cases)")
    for column in ("scorer", "cold HR@10", "warm HR@10", "overall NDCG@10"):
        table.add_column(column)
    rows = {"model (cold start on)": results["model"], "model (cold start off)": results["model_without_coldstart"],
            "model (default policy)": results["model_default_policy"],
            **{f"baseline {k}": v for k, v in results["baselines"].items()}}
    for label, metrics in rows.items():
        table.add_row(label, f"{metrics['cold']['hr10']:.4f}", f"{metrics['warm']['hr10']:.4f}",
                      f"{metrics['overall']['ndcg10']:.4f}")
    console.print(table)
    console.print(f"summary: {summary}")
    console.print(f"report: {path}")
