"""``facet eval``: train centrally and per region in isolation, rank against all items, compare with
the baselines on the same split, and write JSON."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from facet.evaluation.baselines import BASELINES, Scorer
from facet.evaluation.metrics import summarize, target_ranks
from facet.evaluation.split import Split, TestCase
from facet.model.examples import make_windows
from facet.model.network import ModelConfig, SequenceRecommender, new_model
from facet.model.training import catalogue_tensors, train_epochs

NEW_SHOPPER_MAX_PRIOR = 2
SCORE_BATCH = 512


def ranks_for(scorer: Scorer, cases: Sequence[TestCase]) -> np.ndarray:
    ranks = [
        target_ranks(scorer(cases[i : i + SCORE_BATCH]), np.asarray([c.target for c in cases[i : i + SCORE_BATCH]]))
        for i in range(0, len(cases), SCORE_BATCH)
    ]
    return np.concatenate(ranks) if ranks else np.zeros(0)


def sliced_metrics(cases: Sequence[TestCase], ranks: np.ndarray) -> dict[str, Any]:
    cold = np.asarray([c.cold_item for c in cases], dtype=bool)
    new = np.asarray([c.prior_events <= NEW_SHOPPER_MAX_PRIOR for c in cases], dtype=bool)
    regions = np.asarray([c.region for c in cases])
    return {
        "overall": summarize(ranks),
        "cold_items": summarize(ranks[cold]),
        "new_shoppers": summarize(ranks[new]),
        "regions": {str(r): summarize(ranks[regions == r]) for r in dict.fromkeys(regions.tolist())},
    }


def model_scorer(model: SequenceRecommender, split: Split) -> Scorer:
    items = catalogue_tensors(split.catalogue)
    space = model.config.feature_space()
    with torch.no_grad():
        model.eval()
        vectors = model.item_vectors(*items)

    def score(cases: Sequence[TestCase]) -> np.ndarray:
        regions = [space.region_bucket(c.region) for c in cases]
        return model.rank(items, [c.history for c in cases], regions, vectors).numpy()

    return score


def train_on(split: Split, shoppers: Sequence[str], config: ModelConfig, epochs: int, seed: int) -> tuple[
    SequenceRecommender, float
]:
    space = config.feature_space()
    sequences = [(space.region_bucket(split.train[s][0]), split.train[s][1]) for s in shoppers]
    windows = make_windows(sequences, config.max_history)
    model = new_model(config, seed)
    started = time.perf_counter()
    if len(windows):
        train_epochs(model, split.catalogue, windows, epochs=epochs, seed=seed)
    return model, time.perf_counter() - started


def run_evaluation(
    split: Split,
    *,
    config: ModelConfig,
    modes: Sequence[str],
    epochs: int,
    seed: int = 0,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    tests = split.tests
    report: dict[str, Any] = {
        "data": {
            "shoppers": len(split.train),
            "items": len(split.catalogue),
            "test_cases": len(tests),
            "cold_item_cases": sum(c.cold_item for c in tests),
            "regions": split.regions,
        },
        "baselines": {},
        "modes": {},
        "training_seconds": {},
    }
    regions = split.regions
    steps = len(BASELINES) + ("centralized" in modes) + ("local" in modes) * len(regions)
    with Progress(transient=True) as progress:
        task = progress.add_task("evaluating", total=steps)
        for name, build in BASELINES.items():
            progress.update(task, description=f"baseline {name}")
            report["baselines"][name] = sliced_metrics(tests, ranks_for(build(split), tests))
            progress.advance(task)
        if "centralized" in modes:
            progress.update(task, description="training centralized model")
            model, seconds = train_on(split, list(split.train), config, epochs, seed)
            report["training_seconds"]["centralized"] = seconds
            report["modes"]["centralized"] = sliced_metrics(tests, ranks_for(model_scorer(model, split), tests))
            progress.advance(task)
        if "local" in modes:
            ranks_by_case: dict[int, float] = {}
            total = 0.0
            for region in regions:
                progress.update(task, description=f"training local model for {region}")
                shoppers = [s for s, (r, _items) in split.train.items() if r == region]
                model, seconds = train_on(split, shoppers, config, epochs, seed)
                total += seconds
                positions = [i for i, c in enumerate(tests) if c.region == region]
                local_ranks = ranks_for(model_scorer(model, split), [tests[i] for i in positions])
                ranks_by_case.update(zip(positions, local_ranks.tolist(), strict=True))
                progress.advance(task)
            ordered = np.asarray([ranks_by_case[i] for i in range(len(tests))])
            report["training_seconds"]["local"] = total
            report["modes"]["local"] = sliced_metrics(tests, ordered)
    report["summary"] = summary_of(report)
    return report


def summary_of(report: dict[str, Any]) -> dict[str, Any]:
    baselines = report["baselines"]
    best = max(baselines, key=lambda b: baselines[b]["overall"]["ndcg10"])
    summary: dict[str, Any] = {
        "best_baseline": best,
        "ndcg10_best_baseline": baselines[best]["overall"]["ndcg10"],
        "hr10_cold_items_popularity": baselines["popularity"]["cold_items"]["hr10"],
    }
    for mode, metrics in report["modes"].items():
        summary[f"ndcg10_{mode}"] = metrics["overall"]["ndcg10"]
    if "centralized" in report["modes"]:
        central = report["modes"]["centralized"]
        summary["hr10_cold_items_model"] = central["cold_items"]["hr10"]
        summary["ndcg10_ratio_vs_best_baseline"] = central["overall"]["ndcg10"] / max(
            summary["ndcg10_best_baseline"], 1e-12
        )
    return summary
