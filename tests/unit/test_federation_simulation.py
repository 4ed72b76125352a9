"""The federation benchmark's simulator: sync waits for the slowest region, async never waits."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from facet.config import ZoneMap
from facet.contracts import ModelUpdate
from facet.evaluation.split import leave_last_out
from facet.federation.server import AggregationPolicy, Aggregator, Outcome
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_lab.bench.federation import (
    FederationSetup,
    Trace,
    build_setup,
    run_async,
    run_federation_benchmark,
    run_hierarchical,
    run_sync_fedavg,
    run_zone_comparison,
    summarize_seeds,
)

from tests.helpers import TINY_MODEL


def _setup(seed: int = 0) -> FederationSetup:
    events = JewelryWorkload(WorkloadConfig(sessions=400, seed=5, regions=("us", "eu", "jp"))).events()
    split = leave_last_out(events, TINY_MODEL.feature_space())
    return build_setup(split, TINY_MODEL, {"eu": 4.0}, max_tests=200, local_steps=2, batch_size=16, seed=seed)


@pytest.fixture(scope="module")
def setup() -> FederationSetup:
    return _setup()


def test_sync_rounds_wait_for_the_slowest_region(setup: FederationSetup) -> None:
    trace = run_sync_fedavg(setup, time_budget=3 * 2 * 4.0, eval_every=8.0)
    assert trace.updates == 3 * 3  # three rounds of three regions
    assert [t for t, _ in trace.points] == [8.0, 16.0, 24.0]
    # The last point is taken after the last round: the same model as the final evaluation.
    assert trace.final["overall"]["ndcg10"] == pytest.approx(trace.points[-1][1])
    assert trace.bytes_sent > 0


def _async_updates_by_region(setup: FederationSetup, time_budget: float) -> tuple[Counter[str], Trace]:
    counts: Counter[str] = Counter()
    policy = AggregationPolicy(mode="fedbuff", buffer_size=2, max_staleness=1000, max_update_norm=1e6)

    def count(_aggregator: Aggregator, update: ModelUpdate, outcome: Outcome) -> None:
        assert outcome.status != "rejected", outcome
        counts[update.region] += 1

    trace = run_async(setup, policy, "fedbuff", time_budget=time_budget, eval_every=100.0, observe=count)
    return counts, trace


def test_async_lets_fast_regions_contribute_more(setup: FederationSetup) -> None:
    counts, trace = _async_updates_by_region(setup, time_budget=24.0)
    assert trace.updates == sum(counts.values()) > 9  # more than sync's 9 in the same simulated time
    assert counts["us"] >= 3 * counts["eu"]


def test_stream_paced_regions_idle_between_rounds(setup: FederationSetup) -> None:
    """us and jp compute a round in 2 time units, eu in 8; paced to one round per 4, us and jp report half
    as often as unpaced, and eu, slower than the pace, is unchanged."""
    unpaced, _ = _async_updates_by_region(setup, time_budget=24.0)
    paced, _ = _async_updates_by_region(dataclasses.replace(setup, min_round_time=4.0), time_budget=24.0)
    assert unpaced["us"] == 12  # one update every 2 units
    assert paced["us"] == paced["jp"] == 6
    assert paced["eu"] == unpaced["eu"] == 3


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    def run(seed: int) -> dict[str, object]:
        result = run_federation_benchmark(_setup(seed), central_epochs=1, sync_rounds=3, buffer_size=2)
        for algorithm in result["algorithms"].values():
            algorithm.pop("compute_seconds")  # wall time, the only thing allowed to differ
        result["centralized"].pop("train_seconds")
        return result

    first = run(0)
    assert run(0) == first
    assert run(1)["algorithms"]["fedbuff"]["curve"] != first["algorithms"]["fedbuff"]["curve"]


def test_summary_speedups_are_sync_time_over_the_best_async_time(setup: FederationSetup) -> None:
    partials: list[dict[str, Any]] = []
    result = run_federation_benchmark(setup, central_epochs=1, sync_rounds=4, server_lr=1.5, buffer_size=2,
                                      on_partial=partials.append)
    # Written as each algorithm finishes: a run stopped early still has the figures of what finished.
    assert [list(p["algorithms"]) for p in partials] == [
        [], ["sync_fedavg"], ["sync_fedavg", "sync_fedavg_server_lr"],
        ["sync_fedavg", "sync_fedavg_server_lr", "fedasync"],
        ["sync_fedavg", "sync_fedavg_server_lr", "fedasync", "fedbuff"]]
    assert partials[-1]["algorithms"]["fedbuff"]["final"] == result["algorithms"]["fedbuff"]["final"]
    times = {name: run["time_to_95pct_centralized"] for name, run in result["algorithms"].items()}
    budget = result["simulation"]["time_budget"]
    summary = result["summary"]
    best = summary["best_async_mode"]
    assert times[best] is not None, times  # this workload does reach the target: the test must not go vacuous
    assert times[best] == min(t for name, t in times.items() if name in ("fedasync", "fedbuff") and t is not None)
    assert summary["speedup_async_vs_sync"] == pytest.approx((times["sync_fedavg"] or budget) / times[best])
    assert summary["speedup_async_vs_sync_same_server_lr"] == pytest.approx(
        (times["sync_fedavg_server_lr"] or budget) / times[best])


def test_seed_summary_is_the_mean_with_the_worst_seed_beside_it() -> None:
    runs = [
        {"speedup_async_vs_sync": 3.0, "speedup_async_vs_sync_same_server_lr": 2.0, "best_async_mode": "fedbuff",
         "ndcg10_ratio_vs_centralized": 0.97, "min_small_region_gain_vs_local": 0.30, "speedup_is_lower_bound": False},
        {"speedup_async_vs_sync": 4.0, "speedup_async_vs_sync_same_server_lr": None, "best_async_mode": "fedbuff",
         "ndcg10_ratio_vs_centralized": 0.93, "min_small_region_gain_vs_local": 0.10, "speedup_is_lower_bound": True},
    ]
    summary = summarize_seeds(runs)
    assert summary["speedup_async_vs_sync"] == pytest.approx(3.5)
    assert summary["ndcg10_ratio_vs_centralized"] == pytest.approx(0.95)
    assert summary["worst_seed_ndcg10_ratio_vs_centralized"] == pytest.approx(0.93)
    assert summary["worst_seed_min_small_region_gain_vs_local"] == pytest.approx(0.10)
    assert summary["speedup_async_vs_sync_same_server_lr"] is None  # a seed without it: no mean of the rest
    assert summary["speedup_is_lower_bound"] is True
    assert summary["best_async_mode"] == "fedbuff"
    assert summary["seeds"] == 2
    with pytest.raises(ValueError):
        summarize_seeds([])


def test_a_zone_tier_sends_one_update_per_zone_step_across_its_boundary(setup: FederationSetup) -> None:
    """The same regions, budget and policy as flat FedBuff; us and jp share a zone whose buffer holds two
    updates, eu is a zone alone: only the zones' forwarded updates cross, and they are fewer."""
    policy = AggregationPolicy(mode="fedbuff", buffer_size=2, max_staleness=1000, max_update_norm=1e6)
    zones = ZoneMap.parse("asia-americas:us,jp;europe:eu")
    run = run_hierarchical(setup, zones, policy, time_budget=24.0, eval_every=100.0)
    flat, flat_trace = _async_updates_by_region(setup, time_budget=24.0)
    assert run.trace.updates == sum(flat.values())  # the regions train and report exactly as in flat
    # us + jp report 24 times (12 steps of their zone), eu 3 times (1 step; its third waits in the buffer).
    assert run.forwarded_updates == 12 + 1
    assert 0 < run.cross_zone_bytes < 0.6 * flat_trace.bytes_sent  # 13 updates cross instead of 27
    assert run.trace.final["overall"]["ndcg10"] > 0
    with pytest.raises(ValueError, match="no zone"):
        run_hierarchical(setup, ZoneMap.parse("europe:eu"), policy, time_budget=24.0, eval_every=100.0)


def test_a_zone_that_waited_long_enough_steps_what_it_holds(setup: FederationSetup) -> None:
    """eu reports every 8 units into a zone of its own whose buffer of 2 it fills every 16: with a wait
    bound of 3, each of its updates goes out alone 3 units after it arrives (at 11 and 19; the third,
    at 24, would wait until 27, past the budget)."""
    policy = AggregationPolicy(mode="fedbuff", buffer_size=2, max_staleness=1000, max_update_norm=1e6)
    zones = ZoneMap.parse("asia-americas:us,jp;europe:eu")
    unbounded = run_hierarchical(setup, zones, policy, time_budget=24.0, eval_every=100.0)
    bounded = run_hierarchical(setup, zones, policy, time_budget=24.0, eval_every=100.0, zone_max_wait=3.0)
    assert unbounded.forwarded_updates == 12 + 1
    assert bounded.forwarded_updates == 12 + 2  # us and jp fill their buffer at once; eu goes out alone


def test_the_zones_only_comparison_runs_flat_and_tiered_fedbuff_alone(setup: FederationSetup) -> None:
    """`--zones-only`: flat FedBuff and the zone tier on the same budget, nothing else, with each figure
    written as its run finishes."""
    partials: list[dict[str, Any]] = []
    result = run_zone_comparison(setup, ZoneMap.parse("asia-americas:us,jp;europe:eu"), sync_rounds=2,
                                 buffer_size=2, on_partial=partials.append)
    assert set(result["summary"]) == {"cross_zone_bytes_ratio", "ndcg10_ratio_hierarchical_vs_flat"}
    assert set(result["algorithms"]) == {"fedbuff", "hierarchical_fedbuff"}
    assert [set(p["algorithms"]) for p in partials] == [{"fedbuff"}]  # flat's figures before the tier runs
    finals = {name: run["final"]["overall"]["ndcg10"] for name, run in result["algorithms"].items()}
    assert result["summary"]["ndcg10_ratio_hierarchical_vs_flat"] == pytest.approx(
        finals["hierarchical_fedbuff"] / finals["fedbuff"])
    assert 0 < result["summary"]["cross_zone_bytes_ratio"] < 1
    assert summarize_seeds([result["summary"]])["seeds"] == 1


def test_the_zone_wait_is_given_in_pacing_periods(setup: FederationSetup) -> None:
    """`--zone-wait-periods`: the wait bound the tier runs with is that many of the trainers' pacing periods
    (15 s over 10 s by default, as the services), and none when regions are compute-bound."""
    zones = ZoneMap.parse("asia-americas:us,jp;europe:eu")
    paced = dataclasses.replace(setup, min_round_time=4.0)
    default = run_zone_comparison(paced, zones, sync_rounds=2, buffer_size=2)
    shorter = run_zone_comparison(paced, zones, sync_rounds=2, buffer_size=2, zone_wait_periods=0.5)
    unpaced = run_zone_comparison(setup, zones, sync_rounds=2, buffer_size=2, zone_wait_periods=0.5)
    assert default["hierarchy"]["zone_max_wait"] == 6.0
    assert shorter["hierarchy"]["zone_max_wait"] == 2.0
    assert unpaced["hierarchy"]["zone_max_wait"] is None
    # A shorter wait forwards eu's lone updates sooner, so at least as many cross.
    assert (shorter["hierarchy"]["hierarchical_updates_crossing"]
            >= default["hierarchy"]["hierarchical_updates_crossing"])
