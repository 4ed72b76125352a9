"""The body of ``facet eval``: load, split, evaluate, write JSON, print a table."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import typer
from facet.evaluation.datasets import DatasetName, load_events
from facet.evaluation.scoring import model_scorer, ranks_for, sliced_metrics, train_on
from facet.evaluation.split import Split, leave_last_out
from facet.model.network import ModelConfig
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from facet_lab.baselines import BASELINES

#: Per-dataset model settings: hashed id table ≥ 2× the catalogue, history long enough for baskets. The
#: jewelry data (short histories, 9.6k items bought a few times each) wants a wider item space and stops
#: improving after 5 epochs (8: 0.099 vs 5: 0.100 NDCG@10; 12: 0.085); retail (3.7k items, long
#: histories) is best at 64 dimensions and 8 epochs within the 10-minute budget.
DATASET_MODELS: dict[DatasetName, ModelConfig] = {
    DatasetName.SYNTHETIC: ModelConfig(id_buckets=8_192, max_history=20),
    DatasetName.JEWELRY: ModelConfig(id_buckets=32_768, max_history=20, dim=128, companion_dim=64),
    DatasetName.RETAIL: ModelConfig(id_buckets=16_384, max_history=20, companion_dim=64),
}
DATASET_EPOCHS: dict[DatasetName, int] = {
    DatasetName.SYNTHETIC: 8,
    DatasetName.JEWELRY: 5,
    DatasetName.RETAIL: 8,
}


def run_eval_command(dataset: str, modes: list[str], json_path: Path, epochs: int | None, seed: int) -> None:
    console = Console()
    try:
        name = DatasetName(dataset)
    except ValueError:
        raise typer.BadParameter(f"unknown dataset {dataset!r}; use synthetic, jewelry or retail") from None
    unknown = set(modes) - {"centralized", "local"}
    if unknown:
        raise typer.BadParameter(f"unknown mode(s) {sorted(unknown)}")
    started = time.perf_counter()
    events = load_events(name, seed=seed + 7)
    config = DATASET_MODELS[name]
    epochs = epochs or DATASET_EPOCHS[name]
    split = leave_last_out(events, config.feature_space())
    config = config.with_regions(split.regions)  # every market its own embedding row
    report = run_evaluation(split, config=config, modes=modes, epochs=epochs, seed=seed)
    report["dataset"] = name.value
    report["epochs"] = epochs
    report["model_config"] = config.model_dump()
    report["total_seconds"] = time.perf_counter() - started
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2))
    table = Table(title=f"facet eval: {name.value} ({report['data']['test_cases']} test shoppers)")
    for column in ("scorer", "NDCG@10", "HR@10", "cold-item HR@10", "new-shopper NDCG@10"):
        table.add_column(column)
    rows = {**{f"baseline {k}": v for k, v in report["baselines"].items()}, **report["modes"]}
    for label, metrics in rows.items():
        table.add_row(label, f"{metrics['overall']['ndcg10']:.4f}", f"{metrics['overall']['hr10']:.4f}",
                      f"{metrics['cold_items']['hr10']:.4f}", f"{metrics['new_shoppers']['ndcg10']:.4f}")
    console.print(table)
    console.print(f"summary: {json.dumps(report['summary'])}")
    console.print(f"report: {json_path}")


def run_evaluation(
    split: Split,
    *,
    config: ModelConfig,
    modes: Sequence[str],
    epochs: int,
    seed: int = 0,
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
