"""``facet bench aggregator``: updates/s through the aggregator's validate-and-apply path for ~1M and
~10M-parameter models, against a bare in-place torch axpy over the same decoded updates (the memory
bandwidth limit), with peak memory against K buffered updates plus two models."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import psutil
import torch
from facet.compression.codecs import CodecSpec, decode_delta, encode_delta
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState
from facet.federation.staleness import PolynomialStaleness
from facet.federation.updates import signed_update

KEY = b"bench"
WARMUP = 4
#: Each side is timed this many times and the median kept: one pass at 1M parameters takes ~0.1 s, short
#: enough that a single scheduler hiccup moved the ratio between 0.35 and 0.62 on the same machine.
REPEATS = 7


def _model(parameters: int, dim: int = 64) -> dict[str, torch.Tensor]:
    rows = parameters // dim
    return {
        "item_id.weight": torch.zeros(rows, dim),
        "head.weight": torch.zeros(dim, dim),
        "head.bias": torch.zeros(dim),
    }


class _PeakRss:
    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_size(
    parameters: int, updates: int, buffer_size: int, codec: str, changed_rows: float = 0.05
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = _model(parameters)
    spec = CodecSpec.parse(codec)
    messages = []
    generator = torch.Generator().manual_seed(1)
    for index in range(updates):
        # Like a real trainer's delta: the embedding rows of the items it saw, every dense weight.
        delta = {name: torch.randn(t.shape, generator=generator) * 1e-3 for name, t in model.items()}
        table = delta["item_id.weight"]
        untouched = torch.rand(table.shape[0], generator=generator) >= changed_rows
        table[untouched] = 0.0
        messages.append(signed_update(KEY, update_id=f"u{index}", trainer_id="trainer-eu", region="eu",
                                      base_version=0, num_samples=100, codec=codec,
                                      payload=encode_delta(delta, spec, seed=index)))
    decoded = [decode_delta(m.payload) for m in messages]
    model_bytes = sum(t.numel() * 4 for t in model.values())

    # Baseline: in-place axpy of the already-decoded deltas, nothing else (after one warm-up pass).
    target = {k: v.clone() for k, v in model.items()}
    for name, tensor in decoded[0].items():
        target[name].add_(tensor, alpha=0.01)
    axpy_runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for delta in decoded:
            for name, tensor in delta.items():
                target[name].add_(tensor, alpha=0.01)
        axpy_runs.append(time.perf_counter() - started)
    axpy_seconds = statistics.median(axpy_runs)
    del decoded, target  # at 10M parameters the decoded deltas are gigabytes: gone before memory is measured

    policy = AggregationPolicy(
        mode="fedbuff",
        buffer_size=buffer_size,
        staleness=PolynomialStaleness(),
        max_staleness=10**6,
        max_update_norm=1e9,
    )
    # Warm-up on a throwaway aggregator (first sparse ops and allocations), so both sides are steady state.
    keys = {"trainer-eu": KEY}
    warm = Aggregator(AggregatorState(parameters={k: v.clone() for k, v in model.items()}), policy, keys)
    for message in messages[:WARMUP]:
        warm.handle(message)
    del warm
    baseline_rss = psutil.Process().memory_info().rss
    aggregator_runs = []
    with _PeakRss() as rss:
        for _ in range(REPEATS):
            # A fresh aggregator each time: the same update ids again would be rejected as duplicates.
            aggregator = Aggregator(AggregatorState(parameters={k: v.clone() for k, v in model.items()}), policy,
                                    keys)
            started = time.perf_counter()
            for message in messages:
                outcome = aggregator.handle(message)
                if outcome.status == "rejected":
                    raise RuntimeError(outcome)
            aggregator_runs.append(time.perf_counter() - started)
            del aggregator
    aggregator_seconds = statistics.median(aggregator_runs)
    payload_bytes = sum(len(m.payload) for m in messages)
    return {
        "parameters": sum(t.numel() for t in model.values()),
        "updates": updates,
        "codec": codec,
        "changed_embedding_rows": changed_rows,
        "updates_per_second": updates / aggregator_seconds,
        "axpy_updates_per_second": updates / axpy_seconds,
        "throughput_ratio_vs_axpy": axpy_seconds / aggregator_seconds,
        "axpy_seconds_per_pass": axpy_runs,
        "aggregator_seconds_per_pass": aggregator_runs,
        "peak_rss_mb": rss.peak / 2**20,
        "rss_growth_mb": (rss.peak - baseline_rss) / 2**20,
        "model_mb": model_bytes / 2**20,
        "bound_mb_k_updates_plus_two_models": (buffer_size + 2) * model_bytes / 2**20,
        "payload_mb_held_by_the_benchmark": payload_bytes / 2**20,
    }


def run_aggregator_benchmark(updates: int = 200, buffer_size: int = 4, codec: str = "rows+int8+zstd") -> dict[str, Any]:
    torch.set_num_threads(1)
    small = bench_size(1_000_000, updates, buffer_size, codec)
    large = bench_size(10_000_000, max(12, updates // 4), buffer_size, codec)
    summary = {
        "throughput_ratio_vs_axpy_1m": small["throughput_ratio_vs_axpy"],
        "throughput_ratio_vs_axpy_10m": large["throughput_ratio_vs_axpy"],
        "peak_rss_mb": max(small["peak_rss_mb"], large["peak_rss_mb"]),
        "rss_growth_within_bound_10m": large["rss_growth_mb"] <= large["bound_mb_k_updates_plus_two_models"],
    }
    return {"summary": summary, "sizes": {"1m": small, "10m": large}}
