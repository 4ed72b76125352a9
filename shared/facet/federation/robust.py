"""Bounding what one signed trainer can do to the global model, from what the aggregator can check.

A trainer's claims about itself (how many samples it trained, how large its delta is) are not trusted.
What the aggregator does see is its configuration (each trainer's sample quota) and every trainer's
history of updates. The fleet is summarised robustly: first each trainer's own median over its recent
updates, then the median over the *other* trainers. One hostile trainer, however fast it reports, is one
trainer in that median and cannot move the reference it is judged against.

The bounds, applied in order:

1. **Samples.** The claimed count is capped at the trainer's quota (``sample_quotas``, else
   ``max_samples_per_update``: what that trainer can plausibly train between two updates, e.g. its
   ``update_every_samples`` plus a batch) and, once it has a history, at ``own_sample_multiple`` × its own
   median claim. The capped count is what weighs the update and what enters the running mean of sample
   counts, so a claim of 10⁹ cannot shrink everyone else's weight.
2. **Norm outliers are rejected.** Norms are compared per (capped) sample: a market that trains 50 local
   steps per update legitimately sends a delta many times longer than one that trains 2, but not a longer
   one per sample. A delta whose norm per sample exceeds ``norm_reject_multiple`` × the fleet's median
   is refused (a scaled or random-noise attack), not clipped into the model.
3. **Norms are clipped.** Beyond ``norm_clip_multiple`` × the fleet's median norm per sample, the delta
   is scaled down to it: a norm-bounded mean, in which no update is longer than a few typical ones of its
   size.
4. **Influence is clipped** (optional backstop for loose quotas). An update moves the model by about
   lr · n s(τ) / n̄ · ‖Δ‖; beyond ``influence_clip_multiple`` × the fleet's median of n s(τ) ‖Δ‖ the delta
   is scaled down to it.

Until ``warmup_trainers`` other trainers have ``warmup_updates`` update(s) each, there is no fleet
reference yet. Under FedBuff such an update is judged when its buffer is stepped instead, against the
other trainers' updates in the same buffer (:func:`vet_in_buffer`: the same reject and clip multiples,
of their median norm and norm per sample both), and only then enters the history; alone in its buffer
(or under FedAsync), only the quota and the policy's absolute ``max_update_norm`` apply.

**Zones.** A zone tier (:mod:`facet.federation.zones`) is the aggregator operator's own process, trusted
like the aggregator (its key is the operator's): it applies every bound here to its regions' updates and
forwards their weighted step with the sum of their (bounded) samples. Judging that step again would
misjudge it: it holds anything from one member to a buffer's worth, so its norm per sample falls with
every update averaged in (a lone small country's forward was 8× the other zones' on retail, refused), and
its plain norm follows whichever members it holds (a zone with one big and two small markets: 10× between
the big one's steps and the small ones'). So a zone's update is bounded only by what its operator
configured (an entry in ``sample_quotas``, and the policy's absolute ``max_update_norm``) besides
signatures, region binding, duplicates and staleness; it never enters the trainers' fleet medians.

What this does not stop: a trainer that stays inside every bound but sends a harmful direction (a sign
flip of an honest-sized update) counts like one honest region pulling the wrong way; `facet bench
poisoning` measures what that costs.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from facet.federation.identities import is_zone


class RobustnessPolicy(BaseModel):
    enabled: bool = True
    #: Quota on one update's claimed sample count, for trainers without their own entry in sample_quotas
    #: (an honest trainer service sends about update_every_samples plus a batch).
    max_samples_per_update: int = Field(default=50_000, ge=1)
    #: Trainer id → its quota (from the deployment's configuration of that trainer).
    sample_quotas: dict[str, int] = Field(default_factory=dict)
    own_sample_multiple: float = Field(default=4.0, ge=1)
    #: Updates of its own a trainer needs before its history caps its claims (traffic varies: a first
    #: update from a quiet minute must not cap a busy one).
    own_history_warmup: int = Field(default=5, ge=1)
    norm_reject_multiple: float = Field(default=6.0, gt=1)
    norm_clip_multiple: float | None = Field(default=3.0, gt=0)
    influence_clip_multiple: float | None = Field(default=None, gt=0)
    #: Updates per trainer kept for its medians.
    history: int = Field(default=20, ge=3, le=10_000)
    warmup_trainers: int = Field(default=2, ge=1)
    warmup_updates: int = Field(default=1, ge=1)


@dataclass(frozen=True)
class Bounded:
    """What the guard made of one update: the sample count to use and the factor to scale its delta by."""

    num_samples: int
    scale: float
    #: Which bound acted: "" when none did.
    clipped: str = ""
    #: False when there was no fleet reference to judge the norm against (warm-up).
    referenced: bool = True


class BoundRejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _Recent:
    samples: deque[float]
    #: Norm per (capped) sample of each accepted delta, after clipping.
    norms: deque[float]
    influence: deque[float]


@dataclass
class InfluenceGuard:
    """Keeps the per-trainer history and bounds each new update against the fleet (pure, no I/O)."""

    policy: RobustnessPolicy
    trainers: dict[str, _Recent] = field(default_factory=dict)

    def _fleet_median(self, attribute: str, excluding: str | None = None) -> float | None:
        warm = [getattr(r, attribute) for name, r in self.trainers.items()
                if len(getattr(r, attribute)) >= self.policy.warmup_updates and name != excluding and not is_zone(name)]
        if len(warm) < self.policy.warmup_trainers:
            return None
        return statistics.median(statistics.median(values) for values in warm)

    def bound(self, trainer: str, claimed_samples: int, norm: float, staleness_weight: float) -> Bounded:
        """Bound one update; raises BoundRejected for a norm outlier. Does not record it (see ``record``)."""
        policy = self.policy
        if not policy.enabled:
            return Bounded(claimed_samples, 1.0)
        if is_zone(trainer):  # the operator's own tier, bounded by its configuration only (see above)
            samples = min(claimed_samples, policy.sample_quotas.get(trainer, claimed_samples))
            return Bounded(samples, 1.0, "samples_quota" if samples < claimed_samples else "")
        quota = policy.sample_quotas.get(trainer, policy.max_samples_per_update)
        samples = min(claimed_samples, quota)
        clipped = "samples_quota" if samples < claimed_samples else ""
        own = self.trainers.get(trainer)
        if own is not None and len(own.samples) >= policy.own_history_warmup:
            ceiling = policy.own_sample_multiple * statistics.median(own.samples)
            if samples > ceiling:
                samples, clipped = max(1, int(ceiling)), "samples_history"
        # The trainer's own history is left out of the fleet references it is judged against.
        scale = 1.0
        per_sample = norm / samples
        fleet_norm = self._fleet_median("norms", excluding=trainer)
        if fleet_norm is not None and fleet_norm > 0:
            if per_sample > policy.norm_reject_multiple * fleet_norm:
                raise BoundRejected("norm_outlier", f"norm per sample {per_sample:.3g} > "
                                                    f"{policy.norm_reject_multiple:g} × fleet median {fleet_norm:.3g}")
            if policy.norm_clip_multiple is not None and per_sample > policy.norm_clip_multiple * fleet_norm:
                scale, clipped = policy.norm_clip_multiple * fleet_norm / per_sample, clipped or "norm"
        referenced = fleet_norm is not None
        fleet_influence = self._fleet_median("influence", excluding=trainer)
        influence = samples * staleness_weight * norm * scale
        if (policy.influence_clip_multiple is not None and fleet_influence is not None
                and influence > policy.influence_clip_multiple * fleet_influence > 0):
            scale *= policy.influence_clip_multiple * fleet_influence / influence
            clipped = clipped or "influence"
        return Bounded(samples, scale, clipped, referenced)

    def record(self, trainer: str, bounded: Bounded, norm: float, staleness_weight: float) -> None:
        """Remember an accepted update (as bounded) in its trainer's history."""
        recent = self.trainers.get(trainer)
        if recent is None:
            size = self.policy.history
            recent = self.trainers[trainer] = _Recent(deque(maxlen=size), deque(maxlen=size), deque(maxlen=size))
        recent.samples.append(bounded.num_samples)
        recent.norms.append(norm * bounded.scale / bounded.num_samples)
        recent.influence.append(bounded.num_samples * staleness_weight * norm * bounded.scale)

    def snapshot(self) -> dict[str, dict[str, list[float]]]:
        """The history as plain lists, for a checkpoint."""
        return {name: {"samples": list(r.samples), "norms": list(r.norms), "influence": list(r.influence)}
                for name, r in self.trainers.items()}

    def restore(self, snapshot: dict[str, dict[str, list[float]]]) -> None:
        size = self.policy.history
        self.trainers = {
            name: _Recent(deque(values.get("samples", []), maxlen=size), deque(values.get("norms", []), maxlen=size),
                          deque(values.get("influence", []), maxlen=size))
            for name, values in snapshot.items()
        }


def vet_in_buffer(trainers: list[str], norms: list[float], samples: list[float], unvetted: list[bool],
                  policy: RobustnessPolicy) -> list[float | None]:
    """For the updates of one FedBuff buffer admitted without a fleet reference (``unvetted``): each one's
    norm, and its norm per sample, against the medians of the *other* trainers' in the buffer. Early
    updates vary widely in size (a first update may cover a few dozen samples), and a short delta over few
    samples is long *per sample*; a scaled or noise delta is long both ways. So an update is dropped only
    when both exceed ``norm_reject_multiple`` × the others', and scaled (by the gentler of the two
    factors) when both exceed ``norm_clip_multiple``. Returns, per update, None to drop it or the factor
    to scale it by (1.0 for the rest, and for any update with no other trainer beside it)."""
    per_sample = [n / max(k, 1) for n, k in zip(norms, samples, strict=True)]
    factors: list[float | None] = []
    for index, (trainer, judge) in enumerate(zip(trainers, unvetted, strict=True)):
        others = [i for i, t in enumerate(trainers) if t != trainer]
        if not judge or not others or not policy.enabled:
            factors.append(1.0)
            continue
        ratios = [value[index] / reference if (reference := statistics.median(value[i] for i in others)) > 0
                  else 0.0 for value in (norms, per_sample)]
        if min(ratios) > policy.norm_reject_multiple:
            factors.append(None)
        elif policy.norm_clip_multiple is not None and min(ratios) > policy.norm_clip_multiple:
            factors.append(policy.norm_clip_multiple / min(ratios))
        else:
            factors.append(1.0)
    return factors
