"""``facet bench …`` subcommands: each writes JSON with a top-level ``summary``."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress

bench_app = typer.Typer(help="Benchmarks: ratios against a baseline measured in the same run.", no_args_is_help=True)
console = Console()


def _report(path: Path, payload: dict[str, object]) -> None:
    console.print_json(json.dumps(payload["summary"], default=str))
    console.print(f"full result: {path}")


#: How regions are paced, shared by every benchmark that simulates the federation.
STEPS_BY_DATA_HELP = ("Local steps per round in proportion to each region's data (FedAvg's local epochs: a big "
                      "market's round takes longer).")
MIN_ROUND_TIME_HELP = ("Pace every region to at most one round per this many time units, as the trainer service "
                       "is paced by its event stream (the default regime; 0: compute-bound, each trains as fast as "
                       "its compute allows, re-training its data).")


@bench_app.command("federation")
def federation(
    dataset: str = typer.Option("synthetic", help="synthetic, jewelry or retail."),
    json_path: Path = typer.Option(Path("reports/bench-federation.json"), "--json"),
    sessions: int = typer.Option(12_000, help="Synthetic sessions."),
    slow_region: str = typer.Option("eu", help="The region that runs 4x slower than the rest."),
    slowdown: float = typer.Option(4.0, min=1.0),
    sync_rounds: int = typer.Option(20, min=2, help="Synchronous rounds; the time budget for every algorithm."),
    local_steps: int = typer.Option(8, min=1),
    central_epochs: int = typer.Option(4, min=1),
    codec: str = typer.Option("rows+int8+zstd"),
    lr: float = typer.Option(5e-3, help="Local learning rate (Adam)."),
    buffer_size: int = typer.Option(4, min=1, help="FedBuff: updates per server step."),
    alpha: float = typer.Option(0.6, help="FedAsync mixing weight."),
    server_lr: float = typer.Option(1.5, help="FedBuff server learning rate."),
    decay_versions: float = typer.Option(50.0, help="Server step decay 1/sqrt(1+v/this); 0 turns it off."),
    steps_by_data: bool = typer.Option(True, help=STEPS_BY_DATA_HELP),
    min_round_time: float = typer.Option(10.0, min=0.0, help=MIN_ROUND_TIME_HELP),
    sample_reference: str = typer.Option("running_mean", help="Async sample counts against the running mean "
                                         "(regions count by samples trained) or the buffer's mean (FedBuff paper)."),
    seed: int = typer.Option(0, help="The first seed."),
    seeds: int = typer.Option(3, min=1, help="Runs on consecutive seeds (fresh workload, split and init); "
                              "the summary is their mean, with the worst seed beside it."),
    zones: str = typer.Option("", help="Also run FedBuff through a zone tier and compare it with flat, e.g. "
                              "'apac:jp,in,ae;emea:eu,uk;americas:us,br' (regions it leaves out form a zone 'rest')."),
    zones_only: bool = typer.Option(False, "--zones-only", help="With --zones: run only flat FedBuff and the "
                                    "zone tier (no centralized, local-only, synchronous or FedAsync run)."),
    zone_wait_periods: float = typer.Option(1.5, min=0.0, help="With --zones: a zone steps a partly filled buffer "
                                            "once its oldest update has waited this many pacing periods (the "
                                            "services' zone_max_wait_s over the trainers' pacing: 15 s / 10 s)."),
) -> None:
    """Time to 95% of centralized NDCG@10: synchronous FedAvg against asynchronous FedAsync/FedBuff."""
    from facet.evaluation.datasets import DatasetName, load_events
    from facet.evaluation.split import leave_last_out

    from facet_lab.bench.common import write_result
    from facet_lab.bench.federation import build_setup, run_federation_benchmark, run_zone_comparison, summarize_seeds
    from facet_lab.evaluate import DATASET_MODELS

    if sample_reference not in ("running_mean", "buffer"):
        raise typer.BadParameter("--sample-reference must be running_mean or buffer")
    from facet.federation.zones import ZoneMap

    try:
        zone_map = ZoneMap.parse(zones) if zones else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--zones") from error
    if zones_only and zone_map is None:
        raise typer.BadParameter("--zones-only compares flat FedBuff with a zone tier: give --zones too")
    name = DatasetName(dataset)
    config = DATASET_MODELS[name]
    runs: list[dict[str, Any]] = []
    for run_seed in range(seed, seed + seeds):
        console.print(f"seed {run_seed} ({run_seed - seed + 1} of {seeds})")
        split = leave_last_out(load_events(name, sessions=sessions, seed=run_seed + 7), config.feature_space())
        setup = build_setup(split, config, {slow_region: slowdown}, seed=run_seed, local_steps=local_steps,
                            codec=codec, lr=lr, steps_by_data=steps_by_data, min_round_time=min_round_time)
        # Regions the map leaves out (a real dataset's long tail of countries) form one more zone, "rest".
        seed_zones = zone_map.covering(setup.regions) if zone_map is not None else None

        def write_partial(partial: dict[str, Any], done: list[dict[str, Any]] = runs,
                          current: int = run_seed) -> None:
            # Written as each algorithm finishes, so a run stopped early still leaves its figures.
            write_result(json_path, {"partial": True, "seeds_finished": len(done)}, dataset=name.value,
                         runs=[*done, {"seed": current, "partial": True, **partial}])

        if zones_only:
            assert seed_zones is not None  # checked above
            result = run_zone_comparison(setup, seed_zones, sync_rounds=sync_rounds, buffer_size=buffer_size,
                                         server_lr=server_lr, decay_versions=decay_versions or None,
                                         sample_reference=sample_reference,  # type: ignore[arg-type]  # checked
                                         on_partial=write_partial, zone_wait_periods=zone_wait_periods)
        else:
            result = run_federation_benchmark(setup, central_epochs=central_epochs, sync_rounds=sync_rounds,
                                              buffer_size=buffer_size, alpha=alpha, server_lr=server_lr,
                                              decay_versions=decay_versions or None,
                                              sample_reference=sample_reference,  # type: ignore[arg-type]
                                              on_partial=write_partial, zones=seed_zones,
                                              zone_wait_periods=zone_wait_periods)
        console.print_json(json.dumps(result["summary"], default=str))
        runs.append({"seed": run_seed, **result})
    summary = summarize_seeds([run["summary"] for run in runs])
    payload = write_result(json_path, summary, dataset=name.value, runs=runs)
    _report(json_path, payload)


@bench_app.command("privacy")
def privacy(
    dataset: str = typer.Option("synthetic", help="synthetic, jewelry or retail."),
    json_path: Path = typer.Option(Path("reports/bench-privacy.json"), "--json"),
    sessions: int = typer.Option(100_000, help="Synthetic sessions (the target needs at least 100,000 shoppers)."),
    rounds: int = typer.Option(12, min=1, help="Federated time budget, in synchronous-round times."),
    local_steps: int = typer.Option(4, min=1, help="Steps per round of the mean region (DP-SGD steps "
                                     "under DP; in proportion to its data with --steps-by-data)."),
    expected_shoppers: int = typer.Option(256, min=1, help="Expected shoppers per DP-SGD step, every region."),
    clip_norm: float = typer.Option(0.1, help="Bound on one shopper's gradient."),
    dp_lr: float | None = typer.Option(None, help="Adam's learning rate under DP (default: the trainer's, "
                                       "PrivacySettings.lr)."),
    epsilon: list[float] = typer.Option([1.0, 2.0, 4.0, 8.0], help="Budgets to run (repeatable)."),
    max_step_noise: float | None = typer.Option(
        None, help="Regions whose steps would carry more noise than this (noise multiplier over expected "
                   "shoppers) sit out under DP (default: the trainer's, PrivacySettings.max_step_noise; "
                   "a large value lets every region train)."),
    train_all_parameters: bool = typer.Option(
        False, help="Train the per-item id and companion rows under DP too (frozen by default: see "
                    "PrivacySettings.frozen_parameters); measures whether a population pays for them."),
    steps_by_data: bool = typer.Option(True, help=STEPS_BY_DATA_HELP),
    min_round_time: float = typer.Option(10.0, min=0.0, help=MIN_ROUND_TIME_HELP),
    max_tests: int = typer.Option(3_000, help="Held-out cases scored (a seeded sample)."),
    seed: int = typer.Option(0),
) -> None:
    """NDCG@10 of the federated model under shopper-level DP at each epsilon, against no DP and the best
    non-private baseline, on one split and time budget."""
    from facet.evaluation.datasets import DatasetName, load_events
    from facet.evaluation.split import leave_last_out

    from facet_lab.bench.common import write_result
    from facet_lab.bench.federation import build_setup
    from facet_lab.bench.privacy import PrivacyOptions, run_privacy_benchmark
    from facet_lab.evaluate import DATASET_MODELS

    name = DatasetName(dataset)
    config = DATASET_MODELS[name]
    split = leave_last_out(load_events(name, sessions=sessions, seed=seed + 7), config.feature_space())
    setup = build_setup(split, config, {}, seed=seed, local_steps=local_steps, max_tests=max_tests,
                        steps_by_data=steps_by_data, min_round_time=min_round_time)
    options = PrivacyOptions(rounds=rounds, expected_shoppers=expected_shoppers, clip_norm=clip_norm)
    if dp_lr is not None:
        options = dataclasses.replace(options, lr=dp_lr)
    if max_step_noise is not None:
        options = dataclasses.replace(options, max_step_noise=max_step_noise)
    if train_all_parameters:
        options = dataclasses.replace(options, frozen_parameters=())
    started = time.perf_counter()

    def write_partial(partial: dict[str, Any]) -> None:
        write_result(json_path, {"partial": True}, dataset=name.value, **partial)

    result = run_privacy_benchmark(setup, options, epsilon, on_partial=write_partial)
    result["seconds"] = time.perf_counter() - started
    payload = write_result(json_path, result.pop("summary"), dataset=name.value, **result)
    _report(json_path, payload)


@bench_app.command("insights")
def insights(
    dataset: str = typer.Option("synthetic", help="synthetic or retail."),
    json_path: Path = typer.Option(Path("reports/bench-insights.json"), "--json"),
    sessions: int = typer.Option(20_000, help="Synthetic sessions."),
    rounds: int = typer.Option(12, min=1, help="Federated training budget, in synchronous-round times."),
    local_steps: int = typer.Option(8, min=1),
    statistics_epsilon: float = typer.Option(2.0, min=0.01, help="The counts' epsilon per period (one release)."),
    statistics_period_days: float = typer.Option(1.0, min=0.01, help="The counts' release period, in days."),
    seed: int = typer.Option(0),
) -> None:
    """Insights from the federated model against the planted tastes (synthetic) or the raw file's category
    shares (retail), and export opportunities against "most popular in A" on a time split."""
    from facet.evaluation.datasets import DatasetName, load_events
    from facet.workload.generator import JewelryWorkload, WorkloadConfig

    from facet_lab.bench.common import write_result
    from facet_lab.bench.insights import InsightsOptions, run_insights_benchmark
    from facet_lab.evaluate import DATASET_MODELS

    name = DatasetName(dataset)
    if name is DatasetName.JEWELRY:
        raise typer.BadParameter("the jewelry file has no real regions (they are simulated from taste)")
    from facet.insights.releases import StatisticsSettings
    from facet.privacy.settings import ReleasePrivacy

    statistics = StatisticsSettings(privacy=ReleasePrivacy(epsilon=statistics_epsilon,
                                                           period_seconds=statistics_period_days * 86_400))
    options = InsightsOptions(rounds=rounds, local_steps=local_steps, statistics=statistics, seed=seed)
    workload = None
    if name is DatasetName.SYNTHETIC:
        workload = JewelryWorkload(WorkloadConfig(sessions=sessions, seed=seed + 7))
        events = list(workload.events())
    else:
        events = load_events(name)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"federated training on {name.value}", total=None)
        result = run_insights_benchmark(name.value, events, DATASET_MODELS[name], options, workload,
                                        tick=lambda: progress.advance(task))
    payload = write_result(json_path, result.pop("summary"), dataset=name.value, **result)
    _report(json_path, payload)


@bench_app.command("compression")
def compression(
    json_path: Path = typer.Option(Path("reports/bench-compression.json"), "--json"),
    sessions: int = typer.Option(8_000, help="Synthetic sessions."),
    rounds: int = typer.Option(12, min=1, help="Federated training budget, in synchronous-round times."),
    seed: int = typer.Option(0),
) -> None:
    """Bytes per update and final NDCG@10 of each codec against float32, after the same federated training."""
    from facet.evaluation.datasets import DatasetName, load_events
    from facet.evaluation.split import leave_last_out

    from facet_lab.bench.common import write_result
    from facet_lab.bench.compression import run_compression_benchmark
    from facet_lab.bench.federation import build_setup
    from facet_lab.evaluate import DATASET_MODELS

    config = DATASET_MODELS[DatasetName.SYNTHETIC]
    split = leave_last_out(load_events(DatasetName.SYNTHETIC, sessions=sessions, seed=seed + 7), config.feature_space())
    setup = build_setup(split, config, {"eu": 4.0}, seed=seed, max_tests=2000)
    result = run_compression_benchmark(setup, rounds)
    payload = write_result(json_path, result.pop("summary"), **result)
    _report(json_path, payload)


@bench_app.command("aggregator")
def aggregator(
    json_path: Path = typer.Option(Path("reports/bench-aggregator.json"), "--json"),
    updates: int = typer.Option(200, min=8),
    buffer_size: int = typer.Option(4, min=1),
    codec: str = typer.Option("rows+int8+zstd", help="The codec trainers send (rows: realistic sparse updates)."),
) -> None:
    """Updates/s through validate-and-apply at ~1M and ~10M parameters, against a bare axpy."""
    from facet_lab.bench.aggregator import run_aggregator_benchmark
    from facet_lab.bench.common import write_result

    result = run_aggregator_benchmark(updates, buffer_size, codec)
    payload = write_result(json_path, result.pop("summary"), **result)
    _report(json_path, payload)


@bench_app.command("ingest")
def ingest(
    json_path: Path = typer.Option(Path("reports/bench-ingest.json"), "--json"),
    batches: int = typer.Option(120, min=4),
    concurrency: int = typer.Option(4, min=1),
) -> None:
    """Events/s accepted end to end through HTTP ingest (batches of 500) against a raw aiokafka producer."""
    import tempfile

    from facet.kafka.broker import provision_broker

    from facet_lab.bench.common import write_result
    from facet_lab.bench.services import run_ingest_benchmark

    with provision_broker() as broker, tempfile.TemporaryDirectory() as work:
        result = run_ingest_benchmark(broker, Path(work), batches=batches, concurrency=concurrency)
    payload = write_result(json_path, result.pop("summary"), **result)
    _report(json_path, payload)


@bench_app.command("recommend")
def recommend(
    json_path: Path = typer.Option(Path("reports/bench-recommend.json"), "--json"),
    duration: float = typer.Option(4.0, min=1, help="Seconds per pass."),
    concurrency: int = typer.Option(16, min=1),
    passes: int = typer.Option(5, min=1, help="Paired passes (top-10, then /healthz) after one warm-up pair."),
) -> None:
    """Top-10 requests/s and p50/p99 under concurrent load, against the same server's /healthz: the median
    of paired passes, with their range."""
    import tempfile

    from facet.kafka.broker import provision_broker

    from facet_lab.bench.common import write_result
    from facet_lab.bench.services import run_recommend_benchmark

    with provision_broker() as broker, tempfile.TemporaryDirectory() as work:
        result = run_recommend_benchmark(broker, Path(work), duration=duration, concurrency=concurrency,
                                         passes=passes)
    payload = write_result(json_path, result.pop("summary"), **result)
    _report(json_path, payload)


@bench_app.command("trainer")
def trainer(
    json_path: Path = typer.Option(Path("reports/bench-trainer.json"), "--json"),
    sessions: int = typer.Option(8_000, min=100),
    batch_size: int = typer.Option(128, min=1),
) -> None:
    """Training samples/s of a trainer consuming from the broker against a bare in-memory PyTorch loop."""
    from facet.kafka.broker import provision_broker

    from facet_lab.bench.common import write_result
    from facet_lab.bench.trainer import run_trainer_benchmark

    with provision_broker() as broker:
        result = run_trainer_benchmark(broker, sessions, batch_size)
    payload = write_result(json_path, result.pop("summary"), **result)
    _report(json_path, payload)


@bench_app.command("poisoning")
def poisoning(
    dataset: str = typer.Option("synthetic", help="synthetic or retail (or jewelry)."),
    json_path: Path = typer.Option(Path("reports/bench-poisoning.json"), "--json"),
    sessions: int = typer.Option(12_000, help="Synthetic sessions."),
    regions: int = typer.Option(7, min=3, help="Keep the largest N regions (retail has 37 countries)."),
    attacker: str | None = typer.Option(None, help="The hostile region (default: the second largest)."),
    sync_rounds: int = typer.Option(20, min=2, help="Time budget, in synchronous-round times."),
    max_tests: int = typer.Option(2000, min=100, help="Held-out cases evaluated (sampled)."),
    undefended_attacks: bool = typer.Option(True, help="Also run every attack with the bounds off, for context."),
    seed: int = typer.Option(0),
    seeds: int = typer.Option(1, min=1, help="Consecutive seeds; the summary is the mean with the worst seed."),
    jobs: int = typer.Option(2, min=1, help="Runs side by side, one thread each (2 cores: 2)."),
    min_round_time: float = typer.Option(10.0, min=0.0, help="Pace regions like stream-fed trainers (at most one "
                                         "round per this many time units; 0: compute-bound)."),
    agreement_mads: float | None = typer.Option(None, min=0.1, help="Turn on the opt-in direction bound "
                                                "(RobustnessPolicy.agreement_reject_mads, e.g. 4)."),
) -> None:
    """One hostile region (sample inflation, scaled delta, sign flip, noise) against the defended aggregator."""
    import functools

    from facet_lab.bench.common import write_result
    from facet_lab.bench.poisoning import poisoning_setup, run_poisoning_benchmark, summarize_poisoning_seeds

    runs = []
    for run_seed in range(seed, seed + seeds):
        factory = functools.partial(poisoning_setup, dataset, sessions=sessions, regions=regions, seed=run_seed,
                                    max_tests=max_tests, min_round_time=min_round_time)
        console.print(f"seed {run_seed} ({run_seed - seed + 1} of {seeds}), {jobs} runs at a time")
        result = run_poisoning_benchmark(factory, sync_rounds=sync_rounds, attacker=attacker,
                                         undefended_attacks=undefended_attacks, jobs=jobs,
                                         agreement_reject_mads=agreement_mads)
        console.print_json(json.dumps(result["summary"], default=str))
        runs.append({"seed": run_seed, **result})
        summary = summarize_poisoning_seeds([run["summary"] for run in runs])
        # Written after every seed, so a run stopped early still leaves its figures.
        payload = write_result(json_path, summary, dataset=dataset, runs=runs)
    _report(json_path, payload)
