"""``facet bench poisoning``: the federation with one signed but hostile region, defended and not.

Every run is the federation benchmark's FedBuff (same data, model, codec, aggregator and clock), so the
only difference between runs is who lies and whether the aggregator's robustness bounds are on. One
region (by default the second largest: a market big enough to matter) is replaced by an attacker that
trains honestly and then, before sending, applies one attack:

- ``sample_inflation``: claims 10⁹ samples (the contract's maximum) for an honest delta;
- ``scaled_delta``: multiplies its delta by ``SCALE``;
- ``sign_flip``: sends the negated delta (pulls the model back along the fleet's direction);
- ``random_noise``: sends Gaussian noise of ``NOISE_NORM_MULTIPLE`` × its honest norm.

And one attacker that knows the defences (``EVASIVE_ATTACKS``, reported beside the four, not in their
minimum): ``sign_flip_evasive`` negates every parameter except the ones the aggregator checks directions
on (``RobustnessPolicy.agreement_parameters``), which it sends honestly.

Summary keys: ``ndcg10_ratio_under_attack_min`` (worst attack's final NDCG@10 over the defended clean
run's; ``..._honest_regions``: the same over every region's shoppers but the attacker's),
``max_model_shift_ratio`` (the attacker's largest single-update move of the global model over the median
honest move, in the same defended run, worst attack) and ``ndcg10_ratio_clean_vs_undefended``
(defended over undefended when nobody attacks: what the bounds cost).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch
from facet.compression.codecs import CodecSpec, decode_delta, encode_delta
from facet.contracts import ModelUpdate
from facet.federation.aggregation import global_norm
from facet.federation.robust import RobustnessPolicy
from facet.federation.server import AggregationPolicy, Aggregator, Outcome
from facet.federation.staleness import PolynomialStaleness
from facet.federation.updates import resigned
from facet.model.examples import PAD
from rich.progress import Progress

from facet_lab.bench.federation import KEY, FederationSetup, _Region, run_async

ATTACKS = ("sample_inflation", "scaled_delta", "sign_flip", "random_noise")
EVASIVE_ATTACKS = ("sign_flip_evasive",)
SCALE = 20.0
NOISE_NORM_MULTIPLE = 5.0


def attack_update(update: ModelUpdate, attack: str, codec: str, generator: torch.Generator) -> ModelUpdate:
    """The honest update turned hostile, and signed again with the region's own (valid) key."""
    changes: dict[str, object] = {}
    if attack == "sample_inflation":
        changes["num_samples"] = 1_000_000_000
    else:
        delta = decode_delta(update.payload)
        if attack == "scaled_delta":
            hostile = {name: tensor * SCALE for name, tensor in delta.items()}
        elif attack == "sign_flip":
            hostile = {name: -tensor for name, tensor in delta.items()}
        elif attack == "sign_flip_evasive":
            checked = set(RobustnessPolicy().agreement_parameters)
            hostile = {name: tensor if name in checked else -tensor for name, tensor in delta.items()}
        elif attack == "random_noise":
            norm = global_norm(delta)
            noise = {name: torch.randn(t.shape, generator=generator) for name, t in delta.items()}
            noise_norm = global_norm(noise)
            hostile = {name: t * (NOISE_NORM_MULTIPLE * norm / max(noise_norm, 1e-12)) for name, t in noise.items()}
        else:
            raise ValueError(f"unknown attack {attack!r}")
        changes["payload"] = encode_delta(hostile, CodecSpec.parse(codec), seed=int(generator.initial_seed()))
    return resigned(update, KEY, **changes)


def hostile_region_factory(attacker: str, attack: str | None) -> Callable[[str, FederationSetup, int], _Region]:
    class _Hostile(_Region):
        def __init__(self, name: str, setup: FederationSetup, index: int) -> None:
            super().__init__(name, setup, index)
            self.generator = torch.Generator().manual_seed(setup.seed + 977)

        def local_round(self, parameters: dict[str, torch.Tensor], version: int) -> ModelUpdate:
            honest = super().local_round(parameters, version)
            return attack_update(honest, attack, self.setup.codec, self.generator) if attack else honest

    def make(name: str, setup: FederationSetup, index: int) -> _Region:
        return _Hostile(name, setup, index) if name == attacker and attack else _Region(name, setup, index)

    return make


class MoveRecorder:
    """Every applied update's move of the global model, split into the attacker's and everyone else's.

    Moves shrink by an order of magnitude over a run (large early steps, then the server step decays), so
    an attacker's move is compared with the honest moves around the same version (``window`` versions
    either side), not with the whole run's median, which would call an honest region's first update a
    10× outlier. The whole-run figure is reported beside it.
    """

    def __init__(self, attacker: str, window: int = 10) -> None:
        self.attacker_trainer = f"trainer-{attacker}"
        self.window = window
        self.attacker: list[tuple[int, float]] = []
        self.honest: list[tuple[int, float]] = []
        self.rejected: dict[str, int] = {}
        self.bounded: dict[str, int] = {}

    def _who(self, update: ModelUpdate) -> str:
        return "attacker" if update.trainer_id == self.attacker_trainer else "honest"

    def __call__(self, aggregator: Aggregator, update: ModelUpdate, outcome: Outcome) -> None:
        for dropped_id, reason in outcome.dropped:  # buffered earlier, refused when the buffer was stepped
            who = "attacker" if dropped_id.startswith(self.attacker_trainer + "-") else "honest"
            self.rejected[f"{who}:{reason}"] = self.rejected.get(f"{who}:{reason}", 0) + 1
        if outcome.status == "rejected":
            key = f"{self._who(update)}:{outcome.reason}"
            self.rejected[key] = self.rejected.get(key, 0) + 1
        elif outcome.clipped:
            key = f"{self._who(update)}:{outcome.clipped}"
            self.bounded[key] = self.bounded.get(key, 0) + 1
        if outcome.new_version is None:
            return
        for move in aggregator.last_moves:
            moves = self.attacker if move.trainer_id == self.attacker_trainer else self.honest
            moves.append((move.version, move.distance))

    def shift_ratio(self) -> float | None:
        """The attacker's largest move over the median honest move near the same version."""
        if not self.honest:
            return None
        ratios = []
        for version, distance in self.attacker:
            nearby = [d for v, d in self.honest if abs(v - version) <= self.window]
            if nearby:
                ratios.append(distance / max(statistics.median(nearby), 1e-12))
        return max(ratios, default=0.0)

    def shift_ratio_vs_run_median(self) -> float | None:
        if not self.honest:
            return None
        largest = max((d for _, d in self.attacker), default=0.0)
        return largest / max(statistics.median(d for _, d in self.honest), 1e-12)


def sample_quotas(setup: FederationSetup, slack: float = 1.5) -> dict[str, int]:
    """Each simulated trainer's quota, as an operator would configure it: what it trains per round (its
    ``update_every_samples``; here local steps × batch size × the region's mean targets per window), with
    slack for the batches' variation."""
    quotas = {}
    for region in setup.regions:
        windows = setup.windows[region]
        targets_per_window = float((windows.targets != PAD).sum()) / max(len(windows), 1)
        quotas[f"trainer-{region}"] = int(slack * setup.steps_for(region) * setup.batch_size * targets_per_window)
    return quotas


def fedbuff_policy(defended: bool, quotas: dict[str, int] | None = None, *, buffer_size: int = 4,
                   server_lr: float = 1.5, decay_versions: float | None = 50.0,
                   agreement_reject_mads: float | None = None) -> AggregationPolicy:
    """The federation bench's FedBuff; only the robustness bounds differ between defended and not
    (``agreement_reject_mads``: the opt-in direction bound)."""
    return AggregationPolicy(mode="fedbuff", buffer_size=buffer_size, server_lr=server_lr,
                             staleness=PolynomialStaleness(exponent=0.5), max_staleness=1000, max_update_norm=1e6,
                             server_lr_decay_versions=decay_versions,
                             robustness=RobustnessPolicy(enabled=defended, sample_quotas=quotas or {},
                                                         agreement_reject_mads=agreement_reject_mads))


def default_attacker(setup: FederationSetup) -> str:
    """The second-largest region by data: a market that matters, not the one that dominates."""
    ranked = sorted(setup.regions, key=lambda r: len(setup.windows[r]), reverse=True)
    return ranked[1] if len(ranked) > 1 else ranked[0]


SetupFactory = Callable[[], FederationSetup]


def poisoning_setup(dataset: str, *, sessions: int, regions: int, seed: int, max_tests: int,
                    min_round_time: float = 0.0) -> FederationSetup:
    """The federation bench's setup on the ``regions`` largest regions (retail has 37 countries), paced
    like stream-fed trainers when ``min_round_time`` is set."""
    from facet.evaluation.datasets import DatasetName, load_events
    from facet.evaluation.split import leave_last_out

    from facet_lab.bench.federation import build_setup
    from facet_lab.evaluate import DATASET_MODELS

    name = DatasetName(dataset)
    config = DATASET_MODELS[name]
    events = load_events(name, sessions=sessions, seed=seed + 7)
    counts: dict[str, int] = {}
    for event in events:
        counts[event.region] = counts.get(event.region, 0) + 1
    kept = set(sorted(counts, key=lambda r: counts[r], reverse=True)[:regions])
    split = leave_last_out([e for e in events if e.region in kept], config.feature_space())
    slowdown = {"eu": 4.0} if "eu" in kept else {}
    return build_setup(split, config, slowdown, seed=seed, max_tests=max_tests, steps_by_data=True,
                       min_round_time=min_round_time)


def _run_one(setup: FederationSetup | SetupFactory, name: str, defended: bool, attack: str | None,
             attacker: str | None, sync_rounds: int, agreement_reject_mads: float | None = None) -> dict[str, Any]:
    """One run of the plan. In a worker process the setup is rebuilt from its (picklable) factory, on one
    thread: two single-threaded runs side by side beat one on two threads."""
    if not isinstance(setup, FederationSetup):
        torch.set_num_threads(1)
        setup = setup()
    attacker = attacker or default_attacker(setup)
    budget = sync_rounds * max(setup.round_time(r) for r in setup.regions)
    recorder = MoveRecorder(attacker)
    started = time.perf_counter()
    policy = fedbuff_policy(defended, sample_quotas(setup), agreement_reject_mads=agreement_reject_mads)
    trace = run_async(setup, policy, name, budget, eval_every=budget * 2,
                      make_region=hostile_region_factory(attacker, attack), observe=recorder)
    return {
        "defended": defended, "attack": attack, "attacker": attacker,
        "final_ndcg10": trace.final["overall"]["ndcg10"],
        "final_regions": {r: v.get("ndcg10") for r, v in trace.final.get("regions", {}).items()},
        "final_region_cases": {r: v.get("users") for r, v in trace.final.get("regions", {}).items()},
        "updates": trace.updates,
        "model_shift_ratio": recorder.shift_ratio(),
        "model_shift_ratio_vs_run_median": recorder.shift_ratio_vs_run_median(),
        "attacker_max_move": max((d for _, d in recorder.attacker), default=None),
        "honest_median_move": statistics.median(d for _, d in recorder.honest) if recorder.honest else None,
        "rejected": recorder.rejected, "bounded": recorder.bounded,
        "seconds": time.perf_counter() - started,
        "regions": {r: len(w) for r, w in setup.windows.items()}, "test_cases": len(setup.tests),
        "time_budget": budget, "codec": setup.codec, "sample_quotas": sample_quotas(setup),
    }


def honest_regions_ndcg10(run: dict[str, Any]) -> float | None:
    """The run's final NDCG@10 over the held-out cases of every region but the attacker's: what the attack
    did to the parties it does not control (its own storefront's shoppers are served by the model it
    poisons and by the data it withholds)."""
    cases = run.get("final_region_cases") or {}
    honest = [(run["final_regions"][r], n) for r, n in cases.items()
              if r != run["attacker"] and n and run["final_regions"].get(r) is not None]
    total = sum(n for _, n in honest)
    return sum(v * n for v, n in honest) / total if total else None


def run_poisoning_benchmark(setup: FederationSetup | SetupFactory, *, sync_rounds: int, attacker: str | None = None,
                            attacks: Sequence[str] = ATTACKS, undefended_attacks: bool = True,
                            jobs: int = 1, evasive_attacks: Sequence[str] = EVASIVE_ATTACKS,
                            agreement_reject_mads: float | None = None) -> dict[str, Any]:
    """Every run of the plan, ``jobs`` at a time (with jobs > 1, ``setup`` must be a picklable factory)."""
    plan: list[tuple[str, bool, str | None]] = [("clean_undefended", False, None), ("clean_defended", True, None)]
    plan += [(f"{attack}_defended", True, attack) for attack in (*attacks, *evasive_attacks)]
    if undefended_attacks:
        plan += [(f"{attack}_undefended", False, attack) for attack in attacks]
    runs: dict[str, dict[str, Any]] = {}
    with Progress() as progress:
        task = progress.add_task("poisoning runs", total=len(plan))
        if jobs == 1:
            built = setup if isinstance(setup, FederationSetup) else setup()
            for name, defended, attack in plan:
                runs[name] = _run_one(built, name, defended, attack, attacker, sync_rounds, agreement_reject_mads)
                progress.advance(task)
        else:
            if isinstance(setup, FederationSetup):
                raise ValueError("parallel runs need a setup factory, not a built setup")
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {pool.submit(_run_one, setup, name, defended, attack, attacker, sync_rounds,
                                       agreement_reject_mads): name
                           for name, defended, attack in plan}
                for future in as_completed(futures):
                    runs[futures[future]] = future.result()
                    progress.advance(task)
    clean = runs["clean_defended"]["final_ndcg10"]
    under_attack = {a: runs[f"{a}_defended"]["final_ndcg10"] / max(clean, 1e-12) for a in attacks}
    shifts = {a: runs[f"{a}_defended"]["model_shift_ratio"] for a in attacks}
    clean_honest = honest_regions_ndcg10(runs["clean_defended"])
    under_attack_honest = {a: value / max(clean_honest, 1e-12) for a in attacks
                           if clean_honest is not None
                           and (value := honest_regions_ndcg10(runs[f"{a}_defended"])) is not None}
    summary = {
        "ndcg10_ratio_under_attack_min": min(under_attack.values()),
        "worst_attack": min(under_attack, key=lambda a: under_attack[a]),
        "max_model_shift_ratio": max((s for s in shifts.values() if s is not None), default=None),
        "ndcg10_ratio_clean_vs_undefended": clean / max(runs["clean_undefended"]["final_ndcg10"], 1e-12),
        # The same worst case over the other regions' shoppers only (beside the key above, not instead).
        "ndcg10_ratio_under_attack_min_honest_regions": min(under_attack_honest.values(), default=None),
        # An attacker that knows the direction check and evades it (not one of the four above).
        **{f"ndcg10_ratio_{a}": runs[f"{a}_defended"]["final_ndcg10"] / max(clean, 1e-12) for a in evasive_attacks},
        "attacker": runs["clean_defended"]["attacker"],
        # The same region's largest move when it is honest: the yardstick for the shift ratio.
        "model_shift_ratio_of_that_region_when_honest": runs["clean_defended"]["model_shift_ratio"],
    }
    return {
        "summary": summary,
        "ndcg10_ratio_under_attack": under_attack,
        "ndcg10_ratio_under_attack_honest_regions": under_attack_honest,
        "model_shift_ratio": shifts,
        "undefended_ndcg10_ratio_under_attack": {
            a: runs[f"{a}_undefended"]["final_ndcg10"] / max(runs["clean_undefended"]["final_ndcg10"], 1e-12)
            for a in attacks if f"{a}_undefended" in runs},
        "undefended_model_shift_ratio": {a: runs[f"{a}_undefended"]["model_shift_ratio"]
                                         for a in attacks if f"{a}_undefended" in runs},
        "runs": runs,
        "attack_strength": {"scale": SCALE, "noise_norm_multiple": NOISE_NORM_MULTIPLE,
                            "claimed_samples": 1_000_000_000},
        "robustness": RobustnessPolicy(agreement_reject_mads=agreement_reject_mads).model_dump(),
    }


def summarize_poisoning_seeds(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each figure over seeds, with the worst seed beside it (worst: lowest ratio, highest shift)."""
    summary: dict[str, Any] = {"seeds": len(summaries), "attacker": sorted({s["attacker"] for s in summaries})}
    for key, worst in (("ndcg10_ratio_under_attack_min", min), ("max_model_shift_ratio", max),
                       ("ndcg10_ratio_clean_vs_undefended", min),
                       ("ndcg10_ratio_under_attack_min_honest_regions", min),
                       *((f"ndcg10_ratio_{a}", min) for a in EVASIVE_ATTACKS)):
        values = [s[key] for s in summaries if s.get(key) is not None]
        summary[key] = statistics.fmean(values) if values else None
        summary[f"worst_seed_{key}"] = worst(values) if values else None
    summary["worst_attack"] = sorted({s["worst_attack"] for s in summaries})
    return summary
