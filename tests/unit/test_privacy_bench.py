"""`facet bench privacy` on a tiny federation: one run without DP and one per epsilon, on the same setup."""

from __future__ import annotations

from typing import Any

import pytest
from facet.evaluation.split import leave_last_out
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_lab.bench.federation import build_setup
from facet_lab.bench.privacy import PrivacyOptions, region_pools, region_privacy, run_privacy_benchmark

from tests.helpers import TINY_MODEL


def test_the_privacy_bench_spends_each_regions_budget_and_reports_its_summary() -> None:
    events = JewelryWorkload(WorkloadConfig(sessions=600, seed=3, regions=("us", "eu", "jp"))).events()
    split = leave_last_out(events, TINY_MODEL.feature_space())
    setup = build_setup(split, TINY_MODEL, {}, max_tests=150, local_steps=2, batch_size=16, seed=0)
    partials: list[dict[str, Any]] = []
    options = PrivacyOptions(rounds=2, expected_shoppers=8)
    # Eight shoppers a step is far too few for DP to pay: bound the noise between ε 8's (every region trains)
    # and ε 1's (every region sits out, as the trainer service does with too few shoppers).
    pools = region_pools(setup)
    budget = options.rounds * max(setup.round_time(r) for r in setup.regions)

    def step_noise(epsilon: float) -> list[float]:
        return [region_privacy(setup, pools[r], r, epsilon, budget, options).step_noise(pools[r].shoppers)
                for r in setup.regions]

    assert max(step_noise(8.0)) < min(step_noise(1.0))
    options = PrivacyOptions(rounds=2, expected_shoppers=8,
                             max_step_noise=(max(step_noise(8.0)) + min(step_noise(1.0))) / 2)

    def written(partial: dict[str, Any]) -> None:  # the writer gets live dicts: copy them, as a file would
        partials.append({key: dict(value) for key, value in partial.items()})

    result = run_privacy_benchmark(setup, options, epsilons=(1.0, 8.0), on_partial=written)

    summary = result["summary"]
    for key in ("ndcg10_ratio_eps8", "ndcg10_ratio_eps1", "eps8_beats_best_baseline", "compression_ratio_under_dp"):
        assert key in summary
    assert summary["ndcg10_ratio_eps8"] == pytest.approx(summary["ndcg10_eps8"] / summary["ndcg10_no_dp"])
    assert summary["compression_ratio_under_dp"] > 1
    assert result["catalogue_items"] == len(split.catalogue)
    # Written after the run without DP and after each epsilon, so a run stopped early keeps its figures.
    assert [sorted(p["runs"]) for p in partials] == [["no_dp"], ["eps1", "no_dp"], ["eps1", "eps8", "no_dp"]]
    runs = result["runs"]
    for region, shoppers in result["regions"].items():
        loose, tight = runs["eps8"]["regions"][region], runs["eps1"]["regions"][region]
        assert loose["shoppers"] == tight["shoppers"] == shoppers
        assert loose["sample_rate"] == pytest.approx(min(1.0, 8 / shoppers))
        # The same steps on a smaller budget need more noise.
        assert loose["steps"] == tight["steps"] > 0
        assert tight["noise_multiplier"] > loose["noise_multiplier"] > 0
    assert runs["eps8"]["samples"] > 0 and runs["eps8"]["train_seconds"] > 0
    assert all(region["trained"] for region in runs["eps8"]["regions"].values())
    assert runs["eps8"]["updates"] > 0
    # Too noisy at ε 1: nobody sends anything, and the global model is the one it started from.
    assert not any(region["trained"] for region in runs["eps1"]["regions"].values())
    assert runs["eps1"]["updates"] == 0 and runs["eps1"]["samples"] == 0
