"""Hierarchical aggregation: a zone tier between regional trainers and the global aggregator.

A zone aggregator takes its regions' updates through the same validation, signatures, robustness bounds,
staleness weighting and FedBuff math as the global aggregator, and forwards one signed, compressed update
per step: the buffer's FedBuff step at learning rate 1,

    Δ_Z = Σ_k min(n_k s(τ_k) / (K n̄_Z), 1) Δ_k        with n_Z = Σ_k n_k,

n̄_Z the running mean of the zone's members' sample counts and τ_k measured against the newest global
version the zone has seen (the trainers' bases are global versions). The update carries n_Z, and its
:class:`~facet.contracts.ZoneStep`: n̄_Z and the headroom 1 / max_k (coefficient). The global aggregator
applies Δ_Z whole, re-based onto the fleet's mean (s(τ_Z) min(n̄_Z / n̄, h_Z), see
:mod:`facet.federation.aggregation`), so every member counts as it would in flat FedBuff however the
regions are zoned. A zone is the operator's own tier: bounded by its configuration only, not the
trainers' norm bounds (:mod:`facet.federation.robust`). Only Δ_Z crosses the zone's boundary, so the bytes
that do fall by about the zone's buffer size (the union of the rows its regions touched is sent once).

Exactly once: the forwarded update's id is derived from the ids it aggregates, so a zone that crashes
after forwarding and rebuilds the same buffer from its uncommitted offsets forwards the same id again,
which the global aggregator rejects as a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

from facet.compression.codecs import CodecSpec, ErrorFeedback
from facet.config import ZoneMap
from facet.contracts import MAX_ZONE_HEADROOM, ModelUpdate, ZoneStep
from facet.federation.identities import zone_trainer_id
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState, Outcome
from facet.federation.updates import signed_update

__all__ = ["ZoneAggregator", "ZoneMap", "forwarded_update_id", "zone_policy", "zone_trainer_id"]

def zone_policy(policy: AggregationPolicy) -> AggregationPolicy:
    """A zone never takes a server step of its own (learning rate 1, no decay). Its members' sample counts are
    measured against its running mean, as flat FedBuff measures them: an update's coefficient n s(τ) / (K n̄)
    is capped at 1, so a market far larger than the mean keeps the whole of a stale delta in a zone as it
    does in flat FedBuff. (Against the buffer's own samples, the UK's share of the global model's movement
    on retail fell from 46 % flat to 16 %; with the running mean, 32 %.)"""
    return policy.model_copy(update={"mode": "fedbuff", "server_lr": 1.0, "server_lr_decay_versions": None,
                                     "sample_reference": "running_mean"})


def forwarded_update_id(zone: str, contributors: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(contributors)).encode()).hexdigest()[:32]
    return f"{zone_trainer_id(zone)}-{digest}"


class ZoneAggregator:
    """One zone's tier. Its state's parameters hold the step being accumulated (zeros between steps) and
    its version counts the zone's steps; staleness is measured against the newest global generation the
    zone has seen, so it means what it means globally."""

    def __init__(self, zone: str, state: AggregatorState, policy: AggregationPolicy,
                 trainer_keys: Mapping[str, bytes], trainer_regions: Mapping[str, str] | None, *,
                 codec: str, signing_key: bytes) -> None:
        self.zone = zone
        with torch.no_grad():
            for tensor in state.parameters.values():
                tensor.zero_()
        self.aggregator = Aggregator(state, zone_policy(policy), trainer_keys, trainer_regions)
        self.codec = CodecSpec.parse(codec)
        self.signing_key = signing_key
        self.feedback = ErrorFeedback()
        #: (epoch, version) of the newest global model seen; None until the first one arrives.
        self.global_generation: tuple[int, int] | None = None
        self.aggregator.staleness_reference = 0
        # A buffer stepped early (its oldest update waited too long) weighs each member as a full one would:
        # re-based at the global aggregator, a lone member would otherwise count K times its flat weight.
        self.aggregator.step_slots = self.aggregator.policy.buffer_size

    @property
    def state(self) -> AggregatorState:
        return self.aggregator.state

    @property
    def global_version(self) -> int:
        return self.global_generation[1] if self.global_generation else 0

    def follow(self, generation: tuple[int, int]) -> None:
        """A global model was broadcast: staleness is measured against the newest (a newer epoch wins over
        any version of an older one, as it does for trainers)."""
        if self.global_generation is None or generation > self.global_generation:
            self.global_generation = generation
            self.aggregator.staleness_reference = generation[1]

    def handle(self, update: ModelUpdate) -> tuple[Outcome, ModelUpdate | None]:
        """The regional update's outcome, and the update to forward when it completed the zone's step."""
        outcome = self.aggregator.handle(update)
        if outcome.new_version is None:
            return outcome, None
        return outcome, self._forward()

    def flush(self) -> ModelUpdate | None:
        """Step over whatever is buffered (a zone whose buffer has waited too long); the update to forward,
        or None when nothing was buffered or every buffered update was refused at the step."""
        if self.aggregator.flush() is None:
            return None
        return self._forward()

    def _forward(self) -> ModelUpdate:
        state = self.state
        contributors = list(state.pending_contributors)
        largest = max(self.aggregator.last_step_scales, default=1.0)
        step = ZoneStep(member_reference=state.mean_samples or max(self.aggregator.last_step_samples, 1),
                        headroom=min(max(1.0 / largest, 1.0), MAX_ZONE_HEADROOM) if largest > 0 else 1.0)
        with torch.no_grad():
            payload = self.feedback.compress(state.parameters, self.codec, seed=state.version)
            for tensor in state.parameters.values():
                tensor.zero_()
        state.pending_contributors.clear()
        return signed_update(self.signing_key, trainer_id=zone_trainer_id(self.zone), region=self.zone,
                             base_version=self.global_version,
                             num_samples=max(self.aggregator.last_step_samples, 1),
                             codec=self.codec.name, payload=payload, zone_step=step,
                             update_id=forwarded_update_id(self.zone, contributors))
