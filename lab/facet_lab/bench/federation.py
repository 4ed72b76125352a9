"""``facet bench federation``: centralized vs local-only vs synchronous FedAvg vs Facet's asynchronous
FedAsync and FedBuff, on the same data, model and compute.

Trainers are simulated in one process for speed, but every step is real: the same LocalLearner
(model, optimizer, codec, error feedback) as the trainer service and the same Aggregator (validation,
signatures, staleness weighting) as the aggregator service. Only the clock is simulated: each local
round costs ``local_steps`` training steps, and a region with slowdown s takes s times as long per step.
Synchronous FedAvg waits for every region each round; the asynchronous modes never wait.

By default each region's local round is in proportion to its data (FedAvg's local epochs), so a big
market's round takes longer and carries more samples; the asynchronous aggregator measures sample counts
against their running mean, so a small market's updates weigh by the samples they carry, not by how often
they arrive (measured: buffer normalisation with the same rounds left the largest region at 0.106 NDCG@10
against 0.161).

Two regimes. By default every region trains as fast as its compute allows, so a small market re-trains
its few examples many times over the budget (``async_passes_over_data`` in the JSON) and its weight per
unit of time follows compute, not data: the fastest to the target, and the most prone to over-fit late.
``min_round_time`` paces regions like trainers fed by a stream, which idle until events arrive.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from facet.contracts import ModelUpdate
from facet.evaluation.scoring import model_scorer, ranks_for, sliced_metrics, train_on
from facet.evaluation.split import Split, TestCase
from facet.federation.client import LocalLearner
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState, Outcome
from facet.federation.staleness import ConstantStaleness, PolynomialStaleness
from facet.federation.zones import ZoneAggregator, ZoneMap, zone_trainer_id
from facet.model.examples import Windows, make_windows
from facet.model.network import ModelConfig, SequenceRecommender, new_model
from facet.model.training import candidates_seen_in
from rich.progress import Progress

KEY = b"bench-key"
#: A zone's wait bound in pacing periods: the zone service's 15 s over the trainers' 10 s between updates.
ZONE_WAIT_PERIODS = 1.5


@dataclass
class FederationSetup:
    split: Split
    config: ModelConfig
    tests: list[TestCase]
    windows: dict[str, Windows]
    slowdown: dict[str, float]
    local_steps: int = 8
    batch_size: int = 64
    lr: float = 5e-3
    codec: str = "rows+int8+zstd"
    seed: int = 0
    #: Local steps per round in proportion to each region's data (mean region: local_steps), so the
    #: sample counts that weight FedAvg follow data sizes, as in a stream where big markets produce more.
    steps_by_data: bool = False
    #: A region starts its next round no sooner than this after the last one started, idling meanwhile:
    #: trainers paced by their event stream (the trainer service trains only on what arrives, plus a
    #: bounded replay) instead of re-training a static split as fast as their compute allows. 0: compute-bound.
    min_round_time: float = 0.0
    #: The softmax's candidates for every learner: items seen in the federation's training data, exactly
    #: the set centralized training uses, so federated and centralized optimise one objective.
    candidates: torch.Tensor | None = None

    def round_time(self, region: str) -> float:
        """Simulated time between a region's updates: its compute, or the stream's pace if that is slower."""
        return max(self.steps_for(region) * self.slowdown.get(region, 1.0), self.min_round_time)

    def steps_for(self, region: str) -> int:
        if not self.steps_by_data:
            return self.local_steps
        mean = sum(len(w) for w in self.windows.values()) / len(self.windows)
        return max(1, round(self.local_steps * len(self.windows[region]) / mean))

    @property
    def regions(self) -> list[str]:
        return list(self.windows)


@dataclass
class Trace:
    """Quality over simulated time for one algorithm."""

    name: str
    points: list[tuple[float, float]] = field(default_factory=list)
    bytes_sent: int = 0
    updates: int = 0
    final: dict[str, Any] = field(default_factory=dict)
    compute_seconds: float = 0.0

    def time_to(self, target: float) -> float | None:
        return next((t for t, quality in self.points if quality >= target), None)


def build_setup(split: Split, config: ModelConfig, slowdown: dict[str, float], *, max_tests: int = 3000,
                seed: int = 0, **options: Any) -> FederationSetup:
    config = config.with_regions(split.regions)  # every market its own embedding row
    space = config.feature_space()
    windows: dict[str, Windows] = {}
    for region in split.regions:
        sequences = [(space.region_bucket(r), items) for r, items in split.train.values() if r == region]
        region_windows = make_windows(sequences, config.max_history)
        if len(region_windows):
            windows[region] = region_windows
    rng = np.random.default_rng(seed)
    tests = split.tests
    if len(tests) > max_tests:
        tests = [tests[i] for i in sorted(rng.choice(len(tests), max_tests, replace=False))]
    return FederationSetup(split, config, tests, windows, slowdown, seed=seed,
                           candidates=candidates_seen_in(windows.values(), len(split.catalogue)), **options)


def evaluate(model: SequenceRecommender, setup: FederationSetup) -> dict[str, Any]:
    return sliced_metrics(setup.tests, ranks_for(model_scorer(model, setup.split), setup.tests))


def _model_from(parameters: dict[str, torch.Tensor], config: ModelConfig) -> SequenceRecommender:
    model = SequenceRecommender(config)
    model.load_state_dict(parameters)
    return model


class _Region:
    def __init__(self, name: str, setup: FederationSetup, index: int) -> None:
        self.name = name
        self.setup = setup
        self.learner = LocalLearner(setup.config, setup.codec, lr=setup.lr, seed=setup.seed + index)
        self.windows = setup.windows[name]
        self.rng = np.random.default_rng(setup.seed + 100 + index)
        self.steps = setup.steps_for(name)
        self.round_time = setup.round_time(name)

    def local_round(self, parameters: dict[str, torch.Tensor], version: int) -> ModelUpdate:
        self.learner.load_global(parameters, version)
        rows = self.rng.integers(0, len(self.windows), self.steps * self.setup.batch_size)
        self.learner.train(self.setup.split.catalogue, self.windows.subset(rows), self.setup.batch_size,
                           self.setup.candidates)
        prepared = self.learner.prepare_update()
        if prepared is None:
            raise RuntimeError(f"{self.name} trained nothing this round")
        return prepared.signed(KEY, trainer_id=f"trainer-{self.name}", region=self.name)


def _aggregator(setup: FederationSetup, policy: AggregationPolicy) -> Aggregator:
    parameters = {k: v.clone() for k, v in new_model(setup.config, setup.seed).state_dict().items()}
    keys = {f"trainer-{r}": KEY for r in setup.regions}
    return Aggregator(AggregatorState(parameters=parameters), policy, keys)


def run_sync_fedavg(setup: FederationSetup, time_budget: float, eval_every: float,
                    tick: Callable[[], None] = lambda: None, decay_versions: float | None = None,
                    server_lr: float = 1.0) -> Trace:
    """The seed's algorithm: every round waits for every region, then one sample-weighted average."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(setup.seed)  # dropout: the same run for the same seed, whatever ran before
        return _sync_fedavg(setup, time_budget, eval_every, tick, decay_versions, server_lr)


def _sync_fedavg(setup: FederationSetup, time_budget: float, eval_every: float, tick: Callable[[], None],
                 decay_versions: float | None, server_lr: float) -> Trace:
    policy = AggregationPolicy(mode="fedbuff", buffer_size=len(setup.regions), server_lr=server_lr,
                               staleness=ConstantStaleness(), max_staleness=0, max_update_norm=1e6,
                               server_lr_decay_versions=decay_versions, sample_reference="buffer")
    aggregator = _aggregator(setup, policy)
    regions = [_Region(name, setup, i) for i, name in enumerate(setup.regions)]
    trace = Trace("sync_fedavg")
    round_time = max(r.round_time for r in regions)
    clock, next_eval = 0.0, 0.0
    started = time.perf_counter()
    while clock + round_time <= time_budget:
        version = aggregator.state.version
        snapshot = {k: v.clone() for k, v in aggregator.state.parameters.items()}
        for region in regions:
            update = region.local_round(snapshot, version)
            trace.bytes_sent += len(update.payload)
            trace.updates += 1
            outcome = aggregator.handle(update)
            if outcome.status == "rejected":
                raise RuntimeError(f"sync update rejected: {outcome}")
        clock += round_time
        if clock >= next_eval:
            quality = evaluate(_model_from(aggregator.state.parameters, setup.config), setup)["overall"]["ndcg10"]
            trace.points.append((clock, quality))
            next_eval = clock + eval_every
            tick()
    trace.compute_seconds = time.perf_counter() - started
    trace.final = evaluate(_model_from(aggregator.state.parameters, setup.config), setup)
    return trace


def _evaluate_until(now: float, next_eval: float, eval_every: float, aggregator: Aggregator,
                    setup: FederationSetup, trace: Trace, tick: Callable[[], None]) -> float:
    """Score the global model at every evaluation time up to ``now``; the next evaluation time."""
    while next_eval <= now:
        quality = evaluate(_model_from(aggregator.state.parameters, setup.config), setup)["overall"]["ndcg10"]
        trace.points.append((next_eval, quality))
        next_eval += eval_every
        tick()
    return next_eval


#: Builds a simulated region; None: the region takes no part (under DP, one too small for its budget).
RegionFactory = Callable[[str, FederationSetup, int], "_Region | None"]
AppliedObserver = Callable[[Aggregator, ModelUpdate, Outcome], None]


def run_async(setup: FederationSetup, policy: AggregationPolicy, name: str, time_budget: float,
              eval_every: float, tick: Callable[[], None] = lambda: None, make_region: RegionFactory | None = None,
              observe: AppliedObserver | None = None) -> Trace:
    """Facet: regions never wait; each update is mixed in (FedAsync) or buffered (FedBuff) on arrival.

    ``make_region`` builds each simulated region (the poisoning bench swaps in a hostile one); ``observe``
    sees every update with the aggregator's outcome (and the aggregator, for its last moves)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(setup.seed)  # dropout: the same run for the same seed, whatever ran before
        return _async(setup, policy, name, time_budget, eval_every, tick, make_region, observe)


def _async(setup: FederationSetup, policy: AggregationPolicy, name: str, time_budget: float, eval_every: float,
           tick: Callable[[], None], make_region: RegionFactory | None, observe: AppliedObserver | None) -> Trace:
    aggregator = _aggregator(setup, policy)
    built = [(make_region or _Region)(r, setup, i) for i, r in enumerate(setup.regions)]
    regions = [region for region in built if region is not None]
    trace = Trace(name)
    pending: list[tuple[float, int, ModelUpdate]] = []
    started = time.perf_counter()
    for index, region in enumerate(regions):
        update = region.local_round(aggregator.state.parameters, aggregator.state.version)
        heapq.heappush(pending, (region.round_time, index, update))
    next_eval = eval_every
    while pending:
        finish, index, update = heapq.heappop(pending)
        if finish > time_budget:
            break
        next_eval = _evaluate_until(finish, next_eval, eval_every, aggregator, setup, trace, tick)
        trace.bytes_sent += len(update.payload)
        trace.updates += 1
        outcome = aggregator.handle(update)
        if observe is not None:
            observe(aggregator, update, outcome)
        region = regions[index]
        following = region.local_round(aggregator.state.parameters, aggregator.state.version)
        heapq.heappush(pending, (finish + region.round_time, index, following))
    trace.compute_seconds = time.perf_counter() - started
    trace.final = evaluate(_model_from(aggregator.state.parameters, setup.config), setup)
    return trace


@dataclass(frozen=True)
class HierarchyRun:
    trace: Trace
    #: Bytes of the zones' forwarded updates: all that crosses a zone boundary upward.
    cross_zone_bytes: int
    forwarded_updates: int
    #: Distinct (zone, global version) pairs fetched: a zone's mirror pulls each version its regions use once.
    zone_model_fetches: int


def run_hierarchical(setup: FederationSetup, zones: ZoneMap, policy: AggregationPolicy, time_budget: float,
                     eval_every: float, tick: Callable[[], None] = lambda: None,
                     zone_buffer: int | None = None, zone_max_wait: float | None = None) -> HierarchyRun:
    """Regions train against the newest global model as in :func:`run_async`; their updates go to their
    zone's :class:`ZoneAggregator` (``zone_buffer`` updates a step, default the policy's buffer: whoever
    arrives, as in flat FedBuff; a partly filled buffer is stepped once its oldest update has waited
    ``zone_max_wait``, as the zone service's ``zone_max_wait_s`` does), and each zone step's forwarded
    update to the global aggregator, which steps on every zone update (buffer 1)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(setup.seed)
        return _hierarchical(setup, zones, policy, time_budget, eval_every, tick, zone_buffer or policy.buffer_size,
                             zone_max_wait)


def _hierarchical(setup: FederationSetup, zones: ZoneMap, policy: AggregationPolicy, time_budget: float,
                  eval_every: float, tick: Callable[[], None], zone_buffer: int,
                  zone_max_wait: float | None) -> HierarchyRun:
    global_policy = policy.model_copy(update={"buffer_size": 1})
    aggregator = _aggregator(setup, global_policy)
    aggregator.trainer_keys.update({zone_trainer_id(z): KEY for z in zones.zones})
    tiers: dict[str, ZoneAggregator] = {}
    for zone, members in zones.zones.items():
        state = AggregatorState(parameters={k: torch.zeros_like(v) for k, v in aggregator.state.parameters.items()})
        tiers[zone] = ZoneAggregator(zone, state, policy.model_copy(update={"buffer_size": zone_buffer}),
                                     {f"trainer-{r}": KEY for r in members}, None, codec=setup.codec,
                                     signing_key=KEY)
    unzoned = [r for r in setup.regions if zones.zone_of(r) is None]
    if unzoned:
        raise ValueError(f"regions in no zone: {unzoned}")
    zone_names = list(tiers)
    regions = [_Region(r, setup, i) for i, r in enumerate(setup.regions)]
    trace = Trace("hierarchical")
    cross_bytes = forwarded_updates = 0
    fetched: set[tuple[str, int]] = set()
    #: (time, event, update): event ≥ 0 is a region's update arriving, −1 − z zone z's wait running out.
    pending: list[tuple[float, int, ModelUpdate | None]] = []
    #: When each zone's wait runs out, counted from its buffer's oldest update (absent: empty buffer).
    deadlines: dict[str, float] = {}
    started = time.perf_counter()

    def start_round(index: int, at: float) -> None:
        region = regions[index]
        fetched.add((zones.zone_of(region.name) or "", aggregator.state.version))
        update = region.local_round(aggregator.state.parameters, aggregator.state.version)
        heapq.heappush(pending, (at + region.round_time, index, update))

    def cross(forwarded: ModelUpdate) -> None:
        nonlocal cross_bytes, forwarded_updates
        cross_bytes += len(forwarded.payload)
        forwarded_updates += 1
        trace.bytes_sent += len(forwarded.payload)
        applied = aggregator.handle(forwarded)
        if applied.status == "rejected":
            raise RuntimeError(f"global aggregator rejected a zone update: {applied}")

    for index in range(len(regions)):
        start_round(index, 0.0)
    next_eval = eval_every
    while pending:
        now, event, update = heapq.heappop(pending)
        if now > time_budget:
            break
        next_eval = _evaluate_until(now, next_eval, eval_every, aggregator, setup, trace, tick)
        if update is None:  # a zone's wait ran out: step what it holds, if it still waits since then
            zone = zone_names[-1 - event]
            if deadlines.get(zone) == now:  # not a stale deadline of a buffer stepped meanwhile
                del deadlines[zone]
                forwarded = tiers[zone].flush()
                if forwarded is not None:
                    cross(forwarded)
            continue
        trace.updates += 1
        zone = zones.zone_of(regions[event].name) or ""
        tier = tiers[zone]
        tier.follow((0, aggregator.state.version))
        outcome, forwarded = tier.handle(update)
        if outcome.status == "rejected":
            raise RuntimeError(f"zone rejected an honest update: {outcome}")
        if forwarded is not None:
            deadlines.pop(zone, None)
            cross(forwarded)
        elif zone not in deadlines and zone_max_wait is not None:
            deadlines[zone] = now + zone_max_wait
            heapq.heappush(pending, (deadlines[zone], -1 - zone_names.index(zone), None))
        start_round(event, now)
    trace.compute_seconds = time.perf_counter() - started
    trace.final = evaluate(_model_from(aggregator.state.parameters, setup.config), setup)
    return HierarchyRun(trace, cross_bytes, forwarded_updates, len(fetched))


def time_budget(setup: FederationSetup, sync_rounds: int, eval_every_rounds: float = 1.0) -> tuple[float, float]:
    """Every algorithm's time budget (``sync_rounds`` synchronous rounds, each as long as the slowest
    region's) and how often it is evaluated (``eval_every_rounds`` half-rounds)."""
    round_time = max(setup.round_time(r) for r in setup.regions)
    return sync_rounds * round_time, eval_every_rounds * round_time / 2


def trace_figures(trace: Trace) -> dict[str, Any]:
    """What the JSON keeps of a finished run, partial or not."""
    return {"final": trace.final, "curve": trace.points, "updates": trace.updates, "bytes_sent": trace.bytes_sent}


class ModelFetches:
    """Observer of flat FedBuff's applied updates counting the (region, version) models fetched: a region's
    next round starts from the version its update made (every region starts from version 0)."""

    def __init__(self, regions: Sequence[str]) -> None:
        self.fetched: set[tuple[str, int]] = {(r, 0) for r in regions}

    def __call__(self, aggregator: Aggregator, update: ModelUpdate, outcome: Outcome) -> None:
        self.fetched.add((update.region, aggregator.state.version))


def bench_policy(mode: Literal["fedasync", "fedbuff"], *, buffer_size: int = 3, alpha: float = 0.6,
                 server_lr: float = 1.0, decay_versions: float | None = None,
                 sample_reference: Literal["running_mean", "buffer"] = "running_mean") -> AggregationPolicy:
    """The benchmark's aggregation policy for ``mode``: the service's math, with the bounds that only a
    hostile trainer needs out of the way (every region here is honest)."""
    return AggregationPolicy(mode=mode, buffer_size=buffer_size, alpha=alpha, server_lr=server_lr,
                             staleness=PolynomialStaleness(exponent=0.5), max_staleness=1000, max_update_norm=1e6,
                             server_lr_decay_versions=decay_versions, sample_reference=sample_reference)


def compare_hierarchy(setup: FederationSetup, zones: ZoneMap, policy: AggregationPolicy, budget: float,
                      eval_every: float, tick: Callable[[], None], flat: Trace, flat_fetches: int,
                      zone_wait_periods: float = ZONE_WAIT_PERIODS) -> tuple[dict[str, Any], Trace]:
    """FedBuff through a zone tier against the flat run ``flat`` of the same policy, setup and budget: the
    comparison's figures, and the hierarchical run's trace."""
    # A zone waits at most ``zone_wait_periods`` pacing periods before stepping what it holds (the services'
    # defaults: zone_max_wait_s over the trainers' pacing); compute-bound, only full buffers are stepped.
    zone_max_wait = zone_wait_periods * setup.min_round_time or None
    run = run_hierarchical(setup, zones, policy, budget, eval_every, tick, zone_max_wait=zone_max_wait)
    return {
        "zones": {z: list(r) for z, r in zones.zones.items()},
        "zone_max_wait": zone_max_wait,
        "measures": "update bytes crossing zone boundaries: the global aggregator sits in no zone, so "
                    "every flat update crosses and only the zones' forwarded updates do",
        "flat_cross_zone_bytes": flat.bytes_sent, "hierarchical_cross_zone_bytes": run.cross_zone_bytes,
        "flat_updates_crossing": flat.updates, "hierarchical_updates_crossing": run.forwarded_updates,
        "model_fetches_crossing": {"flat": flat_fetches, "hierarchical": run.zone_model_fetches,
                                   "counts": "one per (region, version) flat; one per (zone, version) "
                                             "when each zone mirrors the models topic"},
        "cross_zone_bytes_ratio": run.cross_zone_bytes / max(flat.bytes_sent, 1),
        "ndcg10_ratio_hierarchical_vs_flat": run.trace.final["overall"]["ndcg10"]
        / max(flat.final["overall"]["ndcg10"], 1e-12),
    }, run.trace


def run_zone_comparison(setup: FederationSetup, zones: ZoneMap, *, sync_rounds: int, buffer_size: int = 3,
                        server_lr: float = 1.0, decay_versions: float | None = None,
                        sample_reference: Literal["running_mean", "buffer"] = "running_mean",
                        on_partial: Callable[[dict[str, Any]], None] | None = None,
                        zone_wait_periods: float = ZONE_WAIT_PERIODS) -> dict[str, Any]:
    """Only flat FedBuff and the same FedBuff through a zone tier, on the budget and policy
    :func:`run_federation_benchmark` gives them (its centralized, local-only, synchronous and FedAsync runs
    left out): the hierarchy's question alone."""
    budget, eval_every = time_budget(setup, sync_rounds)
    policy = bench_policy("fedbuff", buffer_size=buffer_size, server_lr=server_lr, decay_versions=decay_versions,
                          sample_reference=sample_reference)
    fetches = ModelFetches(setup.regions)
    with Progress(transient=True) as progress:
        task = progress.add_task("flat FedBuff", total=None)
        flat = run_async(setup, policy, "fedbuff", budget, eval_every, lambda: progress.advance(task),
                         observe=fetches)
        algorithms = {"fedbuff": trace_figures(flat)}
        if on_partial is not None:
            on_partial({"algorithms": dict(algorithms)})
        progress.update(task, description="hierarchical FedBuff (zone tier)")
        hierarchy, trace = compare_hierarchy(setup, zones, policy, budget, eval_every,
                                             lambda: progress.advance(task), flat, len(fetches.fetched),
                                             zone_wait_periods)
    algorithms["hierarchical_fedbuff"] = trace_figures(trace)
    return {"summary": {key: hierarchy[key] for key in ("cross_zone_bytes_ratio",
                                                        "ndcg10_ratio_hierarchical_vs_flat")},
            "algorithms": algorithms, "hierarchy": hierarchy,
            "simulation": {"time_budget": budget, "codec": setup.codec, "server_lr_decay_versions": decay_versions,
                           "regions": {r: len(w) for r, w in setup.windows.items()}, "test_cases": len(setup.tests)}}


def run_federation_benchmark(setup: FederationSetup, *, central_epochs: int, sync_rounds: int,
                             eval_every_rounds: float = 1.0, include: Sequence[str] = ("fedasync", "fedbuff"),
                             buffer_size: int = 3, alpha: float = 0.6, server_lr: float = 1.0,
                             decay_versions: float | None = None,
                             sample_reference: Literal["running_mean", "buffer"] = "running_mean",
                             on_partial: Callable[[dict[str, Any]], None] | None = None,
                             zones: ZoneMap | None = None, zone_wait_periods: float = ZONE_WAIT_PERIODS,
                             ) -> dict[str, Any]:
    """``on_partial`` sees what is known so far after the baselines and after each algorithm, so a run
    stopped early still leaves its figures. With ``zones``, FedBuff also runs hierarchically (a zone tier
    per zone) and the two are compared on quality and on the bytes crossing zone boundaries."""
    if zones is not None and "fedbuff" not in include:
        raise ValueError("the hierarchy is compared with flat FedBuff: include fedbuff")
    regions = setup.regions
    traces: dict[str, Trace] = {}

    def report_partial() -> None:
        if on_partial is not None:
            on_partial({"centralized": {"metrics": central_metrics, "epochs": central_epochs},
                        "local_only": local, "target_ndcg10": 0.95 * central_metrics["overall"]["ndcg10"],
                        "algorithms": {name: trace_figures(trace) for name, trace in traces.items()}})

    budget, eval_every = time_budget(setup, sync_rounds, eval_every_rounds)
    sync_round_time = budget / sync_rounds
    with Progress(transient=True) as progress:
        task = progress.add_task("centralized", total=None)
        started = time.perf_counter()
        central, _ = train_on(setup.split, list(setup.split.train), setup.config, central_epochs, setup.seed)
        central_metrics = evaluate(central, setup)
        central_seconds = time.perf_counter() - started
        local: dict[str, dict[str, Any]] = {}
        for region in regions:
            progress.update(task, description=f"local-only {region}")
            shoppers = [s for s, (r, _items) in setup.split.train.items() if r == region]
            model, _ = train_on(setup.split, shoppers, setup.config, central_epochs, setup.seed)
            local[region] = evaluate(model, setup)["regions"].get(region, {})
        report_partial()
        progress.update(task, description="synchronous FedAvg")
        traces["sync_fedavg"] = run_sync_fedavg(setup, budget, eval_every, lambda: progress.advance(task),
                                                decay_versions)
        report_partial()
        if server_lr != 1.0:
            # The seed's algorithm given FedBuff's server step size too, so the speedup is not only the
            # step size: reported next to the headline figure.
            progress.update(task, description=f"synchronous FedAvg, server lr {server_lr}")
            traces["sync_fedavg_server_lr"] = run_sync_fedavg(setup, budget, eval_every,
                                                              lambda: progress.advance(task), decay_versions,
                                                              server_lr)
            report_partial()
        policies = {"fedasync": bench_policy("fedasync", alpha=alpha, decay_versions=decay_versions,
                                             sample_reference=sample_reference),
                    "fedbuff": bench_policy("fedbuff", buffer_size=buffer_size, server_lr=server_lr,
                                            decay_versions=decay_versions, sample_reference=sample_reference)}
        flat_fetches = ModelFetches(regions)
        for name in include:
            progress.update(task, description=f"asynchronous {name}")
            traces[name] = run_async(setup, policies[name], name, budget, eval_every,
                                     lambda: progress.advance(task),
                                     observe=flat_fetches if name == "fedbuff" else None)
            report_partial()
        hierarchy: dict[str, Any] | None = None
        if zones is not None:
            progress.update(task, description="hierarchical FedBuff (zone tier)")
            hierarchy, traces["hierarchical_fedbuff"] = compare_hierarchy(
                setup, zones, policies["fedbuff"], budget, eval_every, lambda: progress.advance(task),
                traces["fedbuff"], len(flat_fetches.fetched), zone_wait_periods)
            report_partial()
    target = 0.95 * central_metrics["overall"]["ndcg10"]
    results: dict[str, Any] = {}
    for name, trace in traces.items():
        results[name] = {
            "time_to_95pct_centralized": trace.time_to(target),
            "final": trace.final,
            "bytes_sent": trace.bytes_sent,
            "updates": trace.updates,
            "curve": trace.points,
            "compute_seconds": trace.compute_seconds,
        }
    best_async = min((n for n in include if results[n]["time_to_95pct_centralized"] is not None),
                     key=lambda n: results[n]["time_to_95pct_centralized"], default=None)
    sync_time = results["sync_fedavg"]["time_to_95pct_centralized"]

    def speedup_over(sync_name: str) -> float | None:
        """Sync's time to the target over the best async mode's; a sync run that never gets there counts
        as the whole budget (so the figure is then a lower bound)."""
        if best_async is None or sync_name not in results:
            return None
        return float((results[sync_name]["time_to_95pct_centralized"] or budget)
                     / results[best_async]["time_to_95pct_centralized"])

    speedup = speedup_over("sync_fedavg")
    chosen = best_async or "fedbuff"
    total = sum(len(w) for w in setup.windows.values())
    small = [r for r in regions if len(setup.windows[r]) / total < 0.10]
    gains = {}
    for region in small:
        local_ndcg = local[region].get("ndcg10", 0.0)
        federated = results[chosen]["final"]["regions"].get(region, {}).get("ndcg10", 0.0)
        gains[region] = (federated / local_ndcg - 1.0) if local_ndcg > 0 else None
    summary = {
        "speedup_async_vs_sync": speedup,
        "speedup_is_lower_bound": sync_time is None and speedup is not None,
        "best_async_mode": chosen,
        "speedup_async_vs_sync_same_server_lr": speedup_over("sync_fedavg_server_lr"),
        "ndcg10_ratio_vs_centralized": results[chosen]["final"]["overall"]["ndcg10"]
        / max(central_metrics["overall"]["ndcg10"], 1e-12),
        "min_small_region_gain_vs_local": min((g for g in gains.values() if g is not None), default=None),
    }
    if hierarchy is not None:
        summary["cross_zone_bytes_ratio"] = hierarchy["cross_zone_bytes_ratio"]
        summary["ndcg10_ratio_hierarchical_vs_flat"] = hierarchy["ndcg10_ratio_hierarchical_vs_flat"]
    return {
        "summary": summary,
        "target_ndcg10": target,
        "centralized": {"metrics": central_metrics, "train_seconds": central_seconds, "epochs": central_epochs},
        "local_only": local,
        "small_region_gains": gains,
        "algorithms": results,
        "hierarchy": hierarchy,
        "simulation": {
            "time_unit": "one local training step of a full-speed region",
            "slowdown": setup.slowdown, "local_steps": {r: setup.steps_for(r) for r in regions},
            "batch_size": setup.batch_size, "steps_by_data": setup.steps_by_data,
            "min_round_time": setup.min_round_time,
            "async_passes_over_data": {r: budget / setup.round_time(r) * setup.steps_for(r) * setup.batch_size
                                   / len(setup.windows[r]) for r in regions},
            "time_budget": budget, "sync_round_time": sync_round_time, "codec": setup.codec,
            "server_lr_decay_versions": decay_versions, "lr": setup.lr, "sample_reference": sample_reference,
            "regions": {r: len(w) for r, w in setup.windows.items()}, "test_cases": len(setup.tests),
        },
    }


#: The summary keys averaged over seeds (each seed is a fresh workload, split and initialisation).
SEED_AVERAGED_KEYS = ("speedup_async_vs_sync", "speedup_async_vs_sync_same_server_lr",
                      "ndcg10_ratio_vs_centralized", "min_small_region_gain_vs_local",
                      "cross_zone_bytes_ratio", "ndcg10_ratio_hierarchical_vs_flat")
#: Figures where less is better: their worst seed is the largest.
LOWER_IS_BETTER = frozenset({"cross_zone_bytes_ratio"})


def summarize_seeds(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary for several seeds: the mean of each figure, with the worst seed's beside it.

    One run's final NDCG@10 moves by about ±0.01 with the seed alone (the curves wobble as updates land),
    as much as the margins the targets are judged by, so the headline is the mean and the worst seed is
    shown rather than hidden."""
    if not summaries:
        raise ValueError("no runs to summarize")
    summary: dict[str, Any] = {}
    for key in SEED_AVERAGED_KEYS:
        if not any(key in s for s in summaries):
            continue  # a comparison this run did not make (the hierarchy without --zones)
        values = [s[key] for s in summaries if s.get(key) is not None]
        summary[key] = float(np.mean(values)) if len(values) == len(summaries) else None
        worst = max if key in LOWER_IS_BETTER else min
        summary[f"worst_seed_{key}"] = worst(values) if values else None
    summary["speedup_is_lower_bound"] = any(s.get("speedup_is_lower_bound") for s in summaries)
    modes = {s.get("best_async_mode") for s in summaries}
    summary["best_async_mode"] = modes.pop() if len(modes) == 1 else sorted(m for m in modes if m)
    summary["seeds"] = len(summaries)
    return summary
