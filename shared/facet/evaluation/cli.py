"""The body of ``facet eval``: load, split, evaluate, write JSON, print a table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from facet.evaluation.datasets import DatasetName, load_events
from facet.evaluation.runner import run_evaluation
from facet.evaluation.split import leave_last_out
from facet.model.network import ModelConfig

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
