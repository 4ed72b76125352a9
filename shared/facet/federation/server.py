"""The aggregator's state machine, free of Kafka: validate an update, then mix it in (FedAsync) or
buffer it (FedBuff). The service feeds it records; the federation benchmark feeds it directly, so both
run exactly the same aggregation code."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from pydantic import BaseModel, Field

from facet.compression.codecs import CodecSpec, decode_delta
from facet.contracts import ModelUpdate
from facet.federation.aggregation import (
    SampleReference,
    WeightedDelta,
    fedasync_step,
    fedbuff_step,
)
from facet.federation.identities import is_zone
from facet.federation.robust import (
    Bounded,
    BoundRejected,
    InfluenceGuard,
    RobustnessPolicy,
    probe_of,
    vet_in_buffer,
)
from facet.federation.signing import verify
from facet.federation.staleness import PolynomialStaleness, StalenessConfig
from facet.federation.validation import UpdateRejected, check_delta, check_staleness, spec_of

_TRAINER_ID = re.compile(r"^(?:trainer|zone)-([a-z][a-z0-9-]{1,31}?)(?:-\d+)?$")


def region_of_trainer(trainer_id: str) -> str | None:
    """The region a trainer id names by convention (``trainer-<region>``; a zone tier's ``zone-<zone>``
    speaks for its zone), when no binding is configured."""
    match = _TRAINER_ID.fullmatch(trainer_id)
    return match.group(1) if match else None


class AggregationPolicy(BaseModel):
    mode: Literal["fedasync", "fedbuff"] = "fedbuff"
    #: FedBuff: updates per server step.
    buffer_size: int = Field(default=4, ge=1, le=10_000)
    server_lr: float = Field(default=1.0, gt=0, le=10)
    #: Server step size decays as 1/sqrt(1 + version / decay): late updates refine instead of drifting
    #: (FedOpt-style server schedules). None keeps the step size constant.
    server_lr_decay_versions: float | None = Field(default=None, gt=0)
    #: FedAsync: mixing weight of one fresh update.
    alpha: float = Field(default=0.6, gt=0, le=1)
    staleness: StalenessConfig = Field(default_factory=PolynomialStaleness)
    max_staleness: int = Field(default=50, ge=0)
    #: What an update's sample count is measured against: the running mean over applied updates (a
    #: buffer of small, frequent updates moves the model a small step, so regions count by the samples
    #: they train, not by how often they report) or, as in the FedBuff paper, the buffer's own mean.
    sample_reference: Literal["running_mean", "buffer"] = "running_mean"
    #: The running mean turns into an exponential average over this many updates.
    sample_mean_horizon: int = Field(default=200, ge=1)
    max_update_norm: float = Field(default=50.0, gt=0)
    on_large_norm: Literal["clip", "reject"] = "clip"
    require_signatures: bool = True
    #: Bounds on what one trainer's claims (samples, norm) can do; see facet.federation.robust.
    robustness: RobustnessPolicy = Field(default_factory=RobustnessPolicy)
    #: How many applied update ids are remembered for deduplication (replays older than this are also
    #: too stale to apply, as long as it exceeds max_staleness × buffer_size).
    remembered_update_ids: int = Field(default=200_000, ge=1_000)


@dataclass(frozen=True)
class Outcome:
    #: "statistics_only": an authentic update without a delta, carrying only a statistics release.
    status: Literal["applied", "buffered", "rejected", "statistics_only"]
    reason: str | None = None
    detail: str = ""
    staleness: int | None = None
    #: Set when this update completed a server step: the new global version.
    new_version: int | None = None
    #: Which robustness bound acted on the update ("" when none).
    clipped: str = ""
    #: Updates buffered earlier and dropped when their buffer was stepped (update id, reason): admitted
    #: before the fleet had a norm reference, they were outliers against the rest of their buffer.
    dropped: tuple[tuple[str, str], ...] = ()


@dataclass
class AggregatorState:
    """Everything a checkpoint must hold to resume exactly."""

    parameters: dict[str, torch.Tensor]
    version: int = 0
    applied_ids: OrderedDict[str, int] = field(default_factory=OrderedDict)
    #: Update ids that went into each version since the last broadcast.
    pending_contributors: list[str] = field(default_factory=list)
    #: Running mean of num_samples over applied updates, and how many it has seen (a SampleReference).
    mean_samples: float | None = None
    samples_counted: int = 0
    #: The aggregator's generation (see GlobalModel.epoch); a new one on every start.
    epoch: int = 0
    #: Per-trainer recent (bounded) sample counts, norms and influence: InfluenceGuard's history.
    guard_history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: InfluenceGuard's recent directions per trainer (``<trainer>/<i>``), for the agreement bound.
    guard_directions: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Move:
    """How far one applied update moved the global model (L2), for monitoring and the poisoning bench."""

    trainer_id: str
    version: int
    distance: float


#: Rejection reasons that mean the update may not be from whom it says; anything else it carries is
#: as untrusted as it is (an authentic but stale update's statistics are still the trainer's own).
AUTHENTICITY_FAILURES = frozenset({"unknown_trainer", "missing_signature", "bad_signature", "unbound_trainer",
                                   "wrong_region"})


class Aggregator:
    def __init__(
        self,
        state: AggregatorState,
        policy: AggregationPolicy,
        trainer_keys: Mapping[str, bytes],
        trainer_regions: Mapping[str, str] | None = None,
    ) -> None:
        self.state = state
        self.policy = policy
        self.trainer_keys = dict(trainer_keys)
        #: Trainer id → the one region it may speak for (default: the region its id names).
        self.trainer_regions = dict(trainer_regions or {})
        self.spec = spec_of(state.parameters)
        self.guard = InfluenceGuard(policy.robustness)
        self.guard.restore(state.guard_history)
        self.guard.restore_directions(state.guard_directions)
        self._buffer: list[tuple[ModelUpdate, WeightedDelta]] = []
        self._buffered_ids: set[str] = set()
        #: Buffered updates admitted without a fleet reference, judged at the step: id → what to record.
        self._unvetted: dict[str, tuple[Bounded, float, float]] = {}
        self._dropped: list[tuple[str, str]] = []
        self._last_clipped = ""
        #: Moves of the updates in the last server step.
        self.last_moves: list[Move] = []
        #: Samples (as bounded) in the last FedBuff step, and each update's coefficient in it: what a zone's
        #: forwarded update carries and its headroom.
        self.last_step_samples = 0
        self.last_step_scales: list[float] = []
        #: The version staleness is measured against, when it is not this aggregator's own: a zone tier's
        #: trainers train on global versions, which the zone follows (None: ``state.version``).
        self.staleness_reference: int | None = None
        #: How many updates a step's coefficients are shared among: None, the updates stepped (a partly
        #: filled buffer flushed at shutdown is their mean); a zone tier, its buffer size (see fedbuff_weights).
        self.step_slots: int | None = None

    def region_label(self, update: ModelUpdate) -> str:
        """The region to report an applied update under: its bound region, never a free-form claim."""
        return self.trainer_regions.get(update.trainer_id) or region_of_trainer(update.trainer_id) or "unbound"

    @property
    def buffer_fill(self) -> int:
        return len(self._buffer)

    def handle(self, update: ModelUpdate) -> Outcome:
        """Validate and apply (or buffer) one update; never raises for a bad update."""
        if not update.carries_delta:
            try:
                self.authenticate(update)
            except UpdateRejected as rejected:
                return Outcome("rejected", rejected.reason, rejected.detail)
            return Outcome("statistics_only")
        try:
            weighted = self._validate(update)
        except UpdateRejected as rejected:
            return Outcome("rejected", rejected.reason, rejected.detail)
        clipped = self._last_clipped
        if self.policy.mode == "fedasync":
            alpha = self.policy.alpha * self._schedule()
            reference = self._reference([weighted])
            scale = fedasync_step(self.state.parameters, weighted, self.policy.staleness, alpha, reference)
            self.last_moves = [Move(update.trainer_id, self.state.version + 1, scale * weighted.norm)]
            return Outcome("applied", staleness=weighted.staleness, new_version=self._advance([update]),
                           clipped=clipped)
        self._buffer.append((update, weighted))
        self._buffered_ids.add(update.update_id)
        if len(self._buffer) < self.policy.buffer_size:
            return Outcome("buffered", staleness=weighted.staleness, clipped=clipped)
        version = self.flush()
        dropped = tuple(self._dropped)
        self._dropped.clear()
        own = next((reason for update_id, reason in dropped if update_id == update.update_id), None)
        if own is not None:
            return Outcome("rejected", own, "a norm outlier against the rest of its buffer (no fleet reference yet)",
                           new_version=version,
                           dropped=tuple(d for d in dropped if d[0] != update.update_id))
        return Outcome("applied", staleness=weighted.staleness, new_version=version, clipped=clipped, dropped=dropped)

    def _vet_buffer(self) -> None:
        """Judge the buffered updates that had no fleet reference against the others in the buffer; drop or
        clip them, and only then enter them in the guard's history."""
        if not self._unvetted:
            return
        updates = [u for u, _ in self._buffer]
        factors = vet_in_buffer([u.trainer_id for u in updates], [w.norm for _, w in self._buffer],
                                [w.num_samples for _, w in self._buffer],
                                [u.update_id in self._unvetted for u in updates], self.policy.robustness)
        kept: list[tuple[ModelUpdate, WeightedDelta]] = []
        for (update, weighted), factor in zip(self._buffer, factors, strict=True):
            pending = self._unvetted.pop(update.update_id, None)
            if factor is None:
                self._dropped.append((update.update_id, "norm_outlier"))
                self._buffered_ids.discard(update.update_id)
                continue
            if factor < 1.0:
                weighted = WeightedDelta({n: t * factor for n, t in weighted.delta.items()}, weighted.num_samples,
                                         weighted.staleness, weighted.norm * factor)
            if pending is not None:
                bounded, norm, weight = pending
                self.guard.record(update.trainer_id, replace(bounded, scale=bounded.scale * factor), norm, weight)
            kept.append((update, weighted))
        self._buffer = kept

    def flush(self) -> int | None:
        """FedBuff server step over whatever is buffered (also used on shutdown)."""
        self._vet_buffer()
        if not self._buffer:
            return None
        updates, deltas = zip(*self._buffer, strict=True)
        self.last_step_samples = round(sum(d.num_samples for d in deltas))  # as bounded, not as claimed
        lr, reference = self.policy.server_lr * self._schedule(), self._reference(deltas)
        scales = fedbuff_step(self.state.parameters, list(deltas), self.policy.staleness, lr, reference,
                              self.step_slots)
        self.last_step_scales = scales
        self.last_moves = [Move(u.trainer_id, self.state.version + 1, scale * d.norm)
                           for u, d, scale in zip(updates, deltas, scales, strict=True)]
        self._buffer.clear()
        self._buffered_ids.clear()
        return self._advance(list(updates))

    def _reference(self, applying: Sequence[WeightedDelta]) -> float | None:
        """Fold the updates being applied into the running mean (only now, so an update replayed after a
        crash, before it was applied, is never counted twice) and return it; None: the buffer's mean."""
        samples = SampleReference(self.policy.sample_mean_horizon, self.state.mean_samples,
                                  self.state.samples_counted)
        for update in applying:
            samples.observe(update.num_samples)
        self.state.mean_samples, self.state.samples_counted = samples.mean, samples.count
        return samples.mean if self.policy.sample_reference == "running_mean" else None

    def _schedule(self) -> float:
        decay = self.policy.server_lr_decay_versions
        return 1.0 if decay is None else (1.0 + self.state.version / decay) ** -0.5

    def _advance(self, updates: list[ModelUpdate]) -> int:
        self.state.guard_history = self.guard.snapshot()  # the guard's view as of this version
        self.state.guard_directions = self.guard.direction_snapshot()
        self.state.version += 1
        for update in updates:
            self.state.applied_ids[update.update_id] = self.state.version
            self.state.pending_contributors.append(update.update_id)
        while len(self.state.applied_ids) > self.policy.remembered_update_ids:
            self.state.applied_ids.popitem(last=False)
        return self.state.version

    def _validate(self, update: ModelUpdate) -> WeightedDelta:
        self._last_clipped = ""
        self.authenticate(update)
        return self._check(update)

    def authenticate(self, update: ModelUpdate) -> None:
        """The update is signed by a known trainer speaking for its own region (when signatures are required);
        raises :class:`UpdateRejected` with one of :data:`AUTHENTICITY_FAILURES` otherwise."""
        key = self.trainer_keys.get(update.trainer_id)
        if self.policy.require_signatures:
            if key is None:
                raise UpdateRejected("unknown_trainer", f"no key for trainer {update.trainer_id!r}")
            if update.signature is None:
                raise UpdateRejected("missing_signature", "update is not signed")
            if not verify(update, key):
                raise UpdateRejected("bad_signature", "signature does not match")
            bound = self.trainer_regions.get(update.trainer_id) or region_of_trainer(update.trainer_id)
            if bound is None:
                raise UpdateRejected("unbound_trainer", f"trainer {update.trainer_id!r} is bound to no region")
            if update.region != bound:
                raise UpdateRejected("wrong_region", f"{update.trainer_id} speaks for {bound}, not {update.region}")

    def _check(self, update: ModelUpdate) -> WeightedDelta:
        if update.update_id in self.state.applied_ids or update.update_id in self._buffered_ids:
            raise UpdateRejected("duplicate", f"update {update.update_id} was already applied")
        if is_zone(update.trainer_id) != (update.zone_step is not None):
            raise UpdateRejected("zone_step_mismatch", "only a zone tier's updates, all of them, describe a step")
        current = self.state.version if self.staleness_reference is None else self.staleness_reference
        staleness = check_staleness(update.base_version, current, self.policy.max_staleness)
        try:
            CodecSpec.parse(update.codec)
        except ValueError as exc:
            raise UpdateRejected("bad_codec", str(exc)) from exc
        try:
            delta = decode_delta(update.payload, dense=False, spec=self.spec)
        except UpdateRejected:
            raise
        except Exception as exc:  # decode_delta raises PoisonMessageError; keep its reason
            reason = getattr(exc, "reason", "bad_codec")
            raise UpdateRejected(reason, str(exc)) from exc
        checked, norm = check_delta(delta, self.spec, max_norm=self.policy.max_update_norm,
                                    on_large_norm=self.policy.on_large_norm)
        weight = self.policy.staleness(staleness)
        try:
            probe = probe_of(checked, self.policy.robustness.agreement_parameters)
            bounded = self.guard.bound(update.trainer_id, update.num_samples, norm, weight, probe)
        except BoundRejected as rejected:
            raise UpdateRejected(rejected.reason, rejected.detail) from rejected
        if bounded.scale < 1.0:
            checked = {name: tensor * bounded.scale for name, tensor in checked.items()}  # sparse stays sparse
        if not bounded.referenced and self.policy.mode == "fedbuff" and self.policy.buffer_size > 1:
            self._unvetted[update.update_id] = (bounded, norm, weight)  # judged when its buffer is stepped
        else:
            self.guard.record(update.trainer_id, bounded, norm, weight)
        self._last_clipped = bounded.clipped
        if update.zone_step is not None:  # its reference shrinks with its samples when its quota cut them
            reference = update.zone_step.member_reference * bounded.num_samples / update.num_samples
            return WeightedDelta(checked, reference, staleness, norm * bounded.scale,
                                 zone_headroom=update.zone_step.headroom)
        return WeightedDelta(checked, bounded.num_samples, staleness, norm * bounded.scale)
