"""``facet bench privacy``: what shopper-level DP costs the federated model.

The federation benchmark's asynchronous FedBuff (same data, split, model, codec, aggregator and simulated
clock) is run once without DP and once per epsilon, each region training with DP-SGD over its own shoppers
(:mod:`facet.privacy.dpsgd`) through the same :class:`LocalLearner` as the trainer service. A region's
budget is the whole run: its noise is set so the steps it takes in the time budget spend exactly epsilon
(at its own sampling rate: ``expected_shoppers`` over its number of shoppers, so a small market samples a
larger share of its shoppers and needs more noise; one whose steps would carry more noise than
``max_step_noise`` sits the run out, as the trainer service waits for shoppers enough). The best
non-private baseline of ``facet eval`` (popularity, co-occurrence, item-kNN) is scored on the same test
cases.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from facet.contracts import ModelUpdate
from facet.evaluation.scoring import ranks_for, sliced_metrics
from facet.federation.client import LocalLearner
from facet.federation.server import AggregationPolicy
from facet.federation.staleness import PolynomialStaleness
from facet.privacy.settings import PrivacySettings
from facet.privacy.shoppers import ShopperWindows, shopper_windows
from rich.progress import Progress

from facet_lab.baselines import BASELINES
from facet_lab.bench.federation import KEY, FederationSetup, _Region, run_async

EPSILONS = (1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class PrivacyOptions:
    rounds: int = 12
    #: Expected sampled shoppers per DP-SGD step in every region (the sampling rate follows its size).
    expected_shoppers: int = 256
    clip_norm: float = 0.1
    delta: float = 1e-7
    lr: float = PrivacySettings.model_fields["lr"].default
    frozen_parameters: tuple[str, ...] = PrivacySettings.model_fields["frozen_parameters"].default
    max_step_noise: float = PrivacySettings.model_fields["max_step_noise"].default


def region_pools(setup: FederationSetup) -> dict[str, ShopperWindows]:
    space = setup.config.feature_space()
    pools: dict[str, ShopperWindows] = {}
    for region in setup.regions:
        sequences = [(space.region_bucket(r), items) for r, items in setup.split.train.values() if r == region]
        pools[region] = shopper_windows(sequences, setup.config.max_history)
    return pools


class _Measured:
    """Training seconds and samples of one run's regions (evaluation and aggregation excluded)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.samples = 0
        self.raw_bytes = 0
        self.sent_bytes = 0


class _TimedRegion(_Region):
    def __init__(self, name: str, setup: FederationSetup, index: int, measured: _Measured) -> None:
        super().__init__(name, setup, index)
        self.measured = measured

    def local_round(self, parameters: dict[str, torch.Tensor], version: int) -> ModelUpdate:
        started = time.perf_counter()
        update = super().local_round(parameters, version)
        self.measured.seconds += time.perf_counter() - started
        self.measured.samples += update.num_samples
        return update


class _PrivateRegion(_Region):
    def __init__(self, name: str, setup: FederationSetup, index: int, privacy: PrivacySettings,
                 pool: ShopperWindows, measured: _Measured) -> None:
        super().__init__(name, setup, index)
        self.learner = LocalLearner(setup.config, setup.codec, privacy=privacy, seed=setup.seed + index)
        self.pool = pool
        self.measured = measured

    def local_round(self, parameters: dict[str, torch.Tensor], version: int) -> ModelUpdate:
        started = time.perf_counter()
        self.learner.load_global(parameters, version)
        self.learner.train_private(self.setup.split.catalogue, self.pool, self.steps, self.setup.candidates)
        samples = self.learner.unsent_samples
        prepared = self.learner.prepare_update()
        if prepared is None:
            raise RuntimeError(f"{self.name} took no step this round")
        self.measured.seconds += time.perf_counter() - started
        self.measured.samples += samples
        self.measured.raw_bytes += prepared.raw_bytes
        self.measured.sent_bytes += len(prepared.payload)
        return prepared.signed(KEY, trainer_id=f"trainer-{self.name}", region=self.name)


def region_privacy(setup: FederationSetup, pool: ShopperWindows, region: str, epsilon: float, budget: float,
                   options: PrivacyOptions) -> PrivacySettings:
    """The region's settings for the run: every step it takes in ``budget`` (including its last, unsent
    round) is paid for by ``epsilon``."""
    rounds = int(budget // setup.round_time(region)) + 1
    return PrivacySettings(epsilon=epsilon, delta=options.delta, sample_rate=min(1.0, options.expected_shoppers
                                                                                  / max(pool.shoppers, 1)),
                           steps_per_period=rounds * setup.steps_for(region), clip_norm=options.clip_norm,
                           pace=False, frozen_parameters=options.frozen_parameters, lr=options.lr,
                           max_step_noise=options.max_step_noise)


def run_privacy_benchmark(setup: FederationSetup, options: PrivacyOptions, epsilons: Sequence[float] = EPSILONS,
                          on_partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    pools = region_pools(setup)
    policy = AggregationPolicy(mode="fedbuff", buffer_size=min(4, len(setup.regions)), server_lr=1.0,
                               staleness=PolynomialStaleness(exponent=0.5), max_staleness=1000, max_update_norm=1e6)
    budget = options.rounds * max(setup.round_time(r) for r in setup.regions)
    runs: dict[str, dict[str, Any]] = {}
    baselines: dict[str, Any] = {}

    def partial() -> None:
        if on_partial is not None:
            on_partial({"runs": runs, "baselines": baselines})

    with Progress(transient=True) as progress:
        task = progress.add_task("baselines", total=None)
        for name, build in BASELINES.items():
            baselines[name] = sliced_metrics(setup.tests, ranks_for(build(setup.split), setup.tests))
        progress.update(task, description="federated, no DP")
        measured = _Measured()
        trace = run_async(setup, policy, "fedbuff", budget, budget / 3, lambda: progress.advance(task),
                          make_region=lambda name, s, i: _TimedRegion(name, s, i, measured))
        runs["no_dp"] = {"final": trace.final, "curve": trace.points, "bytes_sent": trace.bytes_sent,
                         "updates": trace.updates, "train_seconds": measured.seconds, "samples": measured.samples}
        partial()
        for epsilon in epsilons:
            progress.update(task, description=f"federated, DP epsilon {epsilon:g}")
            measured = _Measured()
            privacy = {r: region_privacy(setup, pools[r], r, epsilon, budget, options) for r in setup.regions}

            def private_region(name: str, s: FederationSetup, i: int, m: _Measured = measured,
                               p: dict[str, PrivacySettings] = privacy) -> _Region | None:
                # As the trainer service does: a region too small for its budget sends nothing.
                if p[name].too_few_shoppers(pools[name].shoppers):
                    return None
                return _PrivateRegion(name, s, i, p[name], pools[name], m)

            trace = run_async(setup, policy, f"dp_eps{epsilon:g}", budget, budget / 3,
                              lambda: progress.advance(task), make_region=private_region)
            runs[f"eps{epsilon:g}"] = {
                "epsilon": epsilon, "final": trace.final, "curve": trace.points, "bytes_sent": trace.bytes_sent,
                "updates": trace.updates, "train_seconds": measured.seconds, "samples": measured.samples,
                "compression_ratio": measured.raw_bytes / max(measured.sent_bytes, 1),
                "regions": {r: {"shoppers": pools[r].shoppers, "sample_rate": p.sample_rate,
                                "steps": p.steps_per_period, "noise_multiplier": p.noise_multiplier(),
                                "step_noise": p.step_noise(pools[r].shoppers),
                                "trained": not p.too_few_shoppers(pools[r].shoppers)}
                            for r, p in privacy.items()},
            }
            partial()
    result = summarize(runs, baselines, pools, options, budget, setup)
    # DP-SGD scores every sampled shopper's positions against the catalogue, so its per-sample cost still
    # depends on the catalogue's size: record it beside the timing.
    result["catalogue_items"] = len(setup.split.catalogue)
    return result


def _ndcg(run: dict[str, Any]) -> float:
    return float(run["final"]["overall"]["ndcg10"])


def summarize(runs: dict[str, dict[str, Any]], baselines: dict[str, Any], pools: dict[str, ShopperWindows],
              options: PrivacyOptions, budget: float, setup: FederationSetup) -> dict[str, Any]:
    plain = max(_ndcg(runs["no_dp"]), 1e-12)
    best_baseline = max(baselines, key=lambda b: baselines[b]["overall"]["ndcg10"])
    best_baseline_ndcg = float(baselines[best_baseline]["overall"]["ndcg10"])
    per_sample = {name: run["train_seconds"] / max(run["samples"], 1) for name, run in runs.items()}
    dp_runs = [name for name in runs if name != "no_dp"]
    trained = [per_sample[name] for name in dp_runs if runs[name]["samples"]]
    summary: dict[str, Any] = {
        "ndcg10_no_dp": _ndcg(runs["no_dp"]),
        **{f"ndcg10_{name}": _ndcg(runs[name]) for name in dp_runs},
        **{f"ndcg10_ratio_{name}": _ndcg(runs[name]) / plain for name in dp_runs},
        "best_baseline": best_baseline,
        "ndcg10_best_baseline": best_baseline_ndcg,
        "compression_ratio_under_dp": runs["eps8"]["compression_ratio"] if "eps8" in runs else None,
        # Over the runs that trained (at a tight budget every region may sit out); None when none did.
        "dp_seconds_per_sample_ratio": float(np.mean(trained)) / max(per_sample["no_dp"], 1e-12) if trained
        else None,
        "shoppers": sum(p.shoppers for p in pools.values()),
    }
    if "eps8" in runs:
        summary["eps8_beats_best_baseline"] = _ndcg(runs["eps8"]) > best_baseline_ndcg
    return {"summary": summary, "runs": runs, "baselines": baselines,
            "options": {**options.__dict__, "time_budget": budget},
            "pacing": {"local_steps": setup.local_steps, "steps_by_data": setup.steps_by_data,
                       "min_round_time": setup.min_round_time,
                       "steps_per_round": {r: setup.steps_for(r) for r in setup.regions}},
            "regions": {r: p.shoppers for r, p in pools.items()}}
