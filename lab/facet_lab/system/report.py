"""The main job's report: JSON plus PNG plots (NDCG@10 over time per region, bytes sent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def write_report(out_dir: Path, report: dict[str, Any]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "ndcg": out_dir / "ndcg10_over_time.png",
             "bytes": out_dir / "bytes_sent.png"}
    timeline = report.get("timeline", [])
    # One point per evaluation (the timeline repeats the last evaluation between them).
    evaluations = [p for i, p in enumerate(timeline) if p.get("regions") and (
        i == 0 or p.get("model_version_evaluated") != timeline[i - 1].get("model_version_evaluated")
        or p.get("regions") != timeline[i - 1].get("regions"))]
    figure, axis = plt.subplots(figsize=(9, 5))
    regions = sorted({r for point in evaluations for r in point.get("regions", {})})
    for region in regions:
        xs = [p["t"] for p in evaluations if region in p.get("regions", {})]
        ys = [p["regions"][region]["ndcg10"] for p in evaluations if region in p.get("regions", {})]
        axis.plot(xs, ys, marker=".", label=region)
    overall = [(p["t"], p["ndcg10"]) for p in evaluations if p.get("ndcg10") is not None]
    if overall:
        axis.plot(*zip(*overall, strict=True), "k-", linewidth=2.5, label="all regions")
    popularity = [(p["t"], p["popularity_ndcg10"]) for p in evaluations if p.get("popularity_ndcg10") is not None]
    if popularity:
        axis.plot(*zip(*popularity, strict=True), "k--", label="popularity (all regions)")
    axis.set_xlabel("seconds since start")
    axis.set_ylabel("NDCG@10 on held-out events")
    axis.set_title("Global model quality per region")
    axis.legend(loc="best", fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(paths["ndcg"], dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(9, 4))
    points = [(p["t"], p.get("update_bytes", 0) / 1e6) for p in timeline]
    if points:
        axis.plot(*zip(*points, strict=True), label="compressed update bytes (trainers → aggregator)")
    raw = [(p["t"], p.get("update_raw_bytes", 0) / 1e6) for p in timeline]
    if raw and any(v for _, v in raw):
        axis.plot(*zip(*raw, strict=True), "--", label="same updates as float32")
    axis.set_xlabel("seconds since start")
    axis.set_ylabel("MB sent (cumulative)")
    axis.set_yscale("symlog")
    axis.legend(loc="best", fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(paths["bytes"], dpi=110)
    plt.close(figure)

    paths["json"].write_text(json.dumps(report, indent=2, default=str))
    return paths
