"""``facet bench compression``: bytes per update and final NDCG@10 after the same federated training
(asynchronous FedBuff on the simulated clock, same seed and budget), for each codec against float32."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from facet.federation.server import AggregationPolicy
from facet.federation.staleness import PolynomialStaleness

from facet_lab.bench.federation import FederationSetup, run_async

CODECS = ("fp32", "fp16+zstd", "int8+zstd", "rows+fp16+zstd", "rows+int8+zstd", "topk:0.1+int8+zstd",
          "topk:0.03+int8+zstd", "topk:0.01+int8+zstd")
MAX_RELATIVE_LOSS = 0.01


def run_compression_benchmark(setup: FederationSetup, rounds: int, codecs: Sequence[str] = CODECS) -> dict[str, Any]:
    policy = AggregationPolicy(mode="fedbuff", buffer_size=3, server_lr=1.0,
                               staleness=PolynomialStaleness(exponent=0.5), max_staleness=1000, max_update_norm=1e6)
    budget = rounds * max(setup.steps_for(r) * setup.slowdown.get(r, 1.0) for r in setup.regions)
    results: dict[str, dict[str, Any]] = {}
    for codec in codecs:
        trace = run_async(replace(setup, codec=codec), policy, codec, budget, eval_every=budget * 10)
        results[codec] = {
            "bytes_per_update": trace.bytes_sent / max(trace.updates, 1),
            "updates": trace.updates,
            "bytes_sent": trace.bytes_sent,
            "ndcg10": trace.final["overall"]["ndcg10"],
            "compute_seconds": trace.compute_seconds,
        }
    reference = results["fp32"]
    for result in results.values():
        result["compression_ratio"] = reference["bytes_per_update"] / result["bytes_per_update"]
        result["ndcg10_relative_loss"] = max(0.0, 1.0 - result["ndcg10"] / reference["ndcg10"])
    eligible = [c for c, r in results.items() if r["ndcg10_relative_loss"] <= MAX_RELATIVE_LOSS]
    best = max(eligible or results, key=lambda c: results[c]["compression_ratio"])
    summary = {
        "best_codec": best,
        "compression_ratio": results[best]["compression_ratio"],
        "ndcg10_relative_loss": results[best]["ndcg10_relative_loss"],
        "within_loss_budget": best in eligible,
    }
    return {"summary": summary, "codecs": results, "rounds": rounds, "max_relative_loss": MAX_RELATIVE_LOSS}
