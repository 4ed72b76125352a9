"""``facet bench poisoning``: the federation with one signed but hostile region, defended and not.

Every run is the federation benchmark's FedBuff (same data, model, codec, aggregator and clock), so the
only difference between runs is who lies and whether the aggregator's robustness bounds are on. One
region (by default the second largest: a market big enough to matter) is replaced by an attacker that
trains honestly and then, before sending, applies one attack:

- ``sample_inflation``: claims 10⁹ samples (the contract's maximum) for an honest delta;
- ``scaled_delta``: multiplies its delta by ``SCALE``;
- ``sign_flip``: sends the negated delta (pulls the model back along the fleet's direction);
- ``random_noise``: sends Gaussian noise of ``NOISE_NORM_MULTIPLE`` × its honest norm.

Summary keys: ``ndcg10_ratio_under_attack_min`` (worst attack's final NDCG@10 over the defended clean
run's), ``max_model_shift_ratio`` (the attacker's largest single-update move of the global model over
the median honest move, in the same defended run, worst attack) and ``ndcg10_ratio_clean_vs_undefended``
(defended over undefended when nobody attacks: what the bounds cost).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from rich.progress import Progress

from facet.bench.federation import KEY, FederationSetup, _Region, run_async
from facet.compression.codecs import CodecSpec, decode_delta, encode_delta
from facet.contracts import ModelUpdate
from facet.federation.aggregation import global_norm
from facet.federation.robust import RobustnessPolicy
from facet.federation.server import AggregationPolicy, Aggregator, Outcome
from facet.federation.signing import sign
from facet.federation.staleness import PolynomialStaleness

ATTACKS = ("sample_inflation", "scaled_delta", "sign_flip", "random_noise")
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
        elif attack == "random_noise":
            norm = global_norm(delta)
            noise = {name: torch.randn(t.shape, generator=generator) for name, t in delta.items()}
            noise_norm = global_norm(noise)
            hostile = {name: t * (NOISE_NORM_MULTIPLE * norm / max(noise_norm, 1e-12)) for name, t in noise.items()}
        else:
            raise ValueError(f"unknown attack {attack!r}")
        changes["payload"] = encode_delta(hostile, CodecSpec.parse(codec), seed=int(generator.initial_seed()))
    hostile_update = update.model_copy(update={**changes, "signature": None})
    return hostile_update.model_copy(update={"signature": sign(hostile_update, KEY)})


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
    """Every applied update's move of the global model, split into the attacker's and everyone else's."""

    def __init__(self, attacker: str) -> None:
        self.attacker_trainer = f"trainer-{attacker}"
        self.attacker: list[float] = []
        self.honest: list[float] = []
        self.rejected: dict[str, int] = {}
        self.bounded: dict[str, int] = {}

    def __call__(self, aggregator: Aggregator, update: ModelUpdate, outcome: Outcome) -> None:
        if outcome.status == "rejected":
            key = f"{'attacker' if update.trainer_id == self.attacker_trainer else 'honest'}:{outcome.reason}"
            self.rejected[key] = self.rejected.get(key, 0) + 1
            return
        if outcome.clipped:
            key = f"{'attacker' if update.trainer_id == self.attacker_trainer else 'honest'}:{outcome.clipped}"
            self.bounded[key] = self.bounded.get(key, 0) + 1
        if outcome.new_version is None:
            return
        for move in aggregator.last_moves:
            (self.attacker if move.trainer_id == self.attacker_trainer else self.honest).append(move.distance)

    def shift_ratio(self) -> float | None:
        if not self.honest:
            return None
        if not self.attacker:
            return 0.0
        return max(self.attacker) / max(statistics.median(self.honest), 1e-12)


def fedbuff_policy(defended: bool, *, buffer_size: int = 4, server_lr: float = 1.5,
                   decay_versions: float | None = 50.0) -> AggregationPolicy:
    """The federation bench's FedBuff; only the robustness bounds differ between defended and not."""
    return AggregationPolicy(mode="fedbuff", buffer_size=buffer_size, server_lr=server_lr,
                             staleness=PolynomialStaleness(exponent=0.5), max_staleness=1000, max_update_norm=1e6,
                             server_lr_decay_versions=decay_versions,
                             robustness=RobustnessPolicy(enabled=defended))


def default_attacker(setup: FederationSetup) -> str:
    """The second-largest region by data: a market that matters, not the one that dominates."""
    ranked = sorted(setup.regions, key=lambda r: len(setup.windows[r]), reverse=True)
    return ranked[1] if len(ranked) > 1 else ranked[0]


def run_poisoning_benchmark(setup: FederationSetup, *, sync_rounds: int, attacker: str | None = None,
                            attacks: Sequence[str] = ATTACKS, undefended_attacks: bool = True) -> dict[str, Any]:
    attacker = attacker or default_attacker(setup)
    budget = sync_rounds * max(setup.round_time(r) for r in setup.regions)
    plan: list[tuple[str, bool, str | None]] = [("clean_undefended", False, None), ("clean_defended", True, None)]
    plan += [(f"{attack}_defended", True, attack) for attack in attacks]
    if undefended_attacks:
        plan += [(f"{attack}_undefended", False, attack) for attack in attacks]
    runs: dict[str, dict[str, Any]] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task("poisoning", total=len(plan))
        for name, defended, attack in plan:
            progress.update(task, description=name)
            recorder = MoveRecorder(attacker)
            started = time.perf_counter()
            trace = run_async(setup, fedbuff_policy(defended), name, budget, eval_every=budget * 2,
                              make_region=hostile_region_factory(attacker, attack), observe=recorder)
            runs[name] = {
                "defended": defended, "attack": attack,
                "final_ndcg10": trace.final["overall"]["ndcg10"],
                "final_regions": {r: v.get("ndcg10") for r, v in trace.final.get("regions", {}).items()},
                "updates": trace.updates,
                "model_shift_ratio": recorder.shift_ratio(),
                "attacker_max_move": max(recorder.attacker, default=None),
                "honest_median_move": statistics.median(recorder.honest) if recorder.honest else None,
                "rejected": recorder.rejected, "bounded": recorder.bounded,
                "seconds": time.perf_counter() - started,
            }
            progress.advance(task)
    clean = runs["clean_defended"]["final_ndcg10"]
    under_attack = {a: runs[f"{a}_defended"]["final_ndcg10"] / max(clean, 1e-12) for a in attacks}
    shifts = {a: runs[f"{a}_defended"]["model_shift_ratio"] for a in attacks}
    summary = {
        "ndcg10_ratio_under_attack_min": min(under_attack.values()),
        "worst_attack": min(under_attack, key=lambda a: under_attack[a]),
        "max_model_shift_ratio": max((s for s in shifts.values() if s is not None), default=None),
        "ndcg10_ratio_clean_vs_undefended": clean / max(runs["clean_undefended"]["final_ndcg10"], 1e-12),
        "attacker": attacker,
    }
    return {
        "summary": summary,
        "ndcg10_ratio_under_attack": under_attack,
        "model_shift_ratio": shifts,
        "undefended_ndcg10_ratio_under_attack": {
            a: runs[f"{a}_undefended"]["final_ndcg10"] / max(runs["clean_undefended"]["final_ndcg10"], 1e-12)
            for a in attacks if f"{a}_undefended" in runs},
        "runs": runs,
        "attack_strength": {"scale": SCALE, "noise_norm_multiple": NOISE_NORM_MULTIPLE,
                            "claimed_samples": 1_000_000_000},
        "simulation": {"time_budget": budget, "regions": {r: len(w) for r, w in setup.windows.items()},
                       "test_cases": len(setup.tests), "codec": setup.codec,
                       "robustness": RobustnessPolicy().model_dump()},
    }


def summarize_poisoning_seeds(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each figure over seeds, with the worst seed beside it (worst: lowest ratio, highest shift)."""
    summary: dict[str, Any] = {"seeds": len(summaries), "attacker": sorted({s["attacker"] for s in summaries})}
    for key, worst in (("ndcg10_ratio_under_attack_min", min), ("max_model_shift_ratio", max),
                       ("ndcg10_ratio_clean_vs_undefended", min)):
        values = [s[key] for s in summaries if s.get(key) is not None]
        summary[key] = statistics.fmean(values) if values else None
        summary[f"worst_seed_{key}"] = worst(values) if values else None
    summary["worst_attack"] = sorted({s["worst_attack"] for s in summaries})
    return summary
