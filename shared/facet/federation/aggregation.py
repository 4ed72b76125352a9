"""Staleness-weighted asynchronous FedAvg as pure functions over named tensors.

The seed's objective is the sample-weighted sum of client losses, min_w Σ_k (n_k/n) F_k(w). Every
update carries a delta Δ_k = w_k - w_base(k) and its sample count n_k. Facet applies

    FedBuff (K buffered updates):  w ← w + η · Σ_k n_k s(τ_k) Δ_k / Σ_k n_k
    FedAsync (one update at once): w ← w + α · s(τ) Δ

With every τ_k = 0 (or any equal staleness, up to the common factor s(τ)), the FedBuff step is exactly
sample-weighted FedAvg's: the property tests check that reduction. Staleness only ever shrinks a
contribution, never re-normalises it away: a buffer of very stale updates moves the model less.

Sample counts can be measured against a running mean n̄ over applied updates instead of the buffer's own:

    w ← w + η · Σ_k n_k s(τ_k) Δ_k / (K · n̄)        (FedAsync: w ← w + α s(τ) (n / n̄) Δ)

Asynchronously, the buffer is whoever arrived first. A small market that trains a few samples and
reports often would otherwise fill buffers alone and move the model a whole step each time, so regions
would count by how often they report instead of by how many samples they train. Against n̄ a buffer of
small updates moves the model a small step; with equal n_k it reduces to the buffer-normalised step.

**Zone steps.** A zone tier (:mod:`facet.federation.zones`) forwards its members' contributions already
weighted, Δ_Z = Σ_k min(n_k s(τ_k) / (K n̄_Z), 1) Δ_k against its members' running mean n̄_Z. Applied
whole after re-basing onto the fleet's mean,

    w ← w + η · s(τ_Z) · min(n̄_Z / n̄, h_Z) · Δ_Z,

each member counts n_k s(τ_k) / (K n̄) as it would in flat FedBuff, a zone of one big market as much as
that market alone; h_Z (the zone's headroom, 1 / its largest coefficient) keeps any member from counting
for more than a whole step, as the cap of 1 does flat. n̄ observes n̄_Z, so it stays a mean per member
update however the fleet is tiered. (Weighting the zone's mean again by its summed samples, as for a
trainer, counted a zone of many small markets by its members' total against a mean inflated by every
zone's totals: on retail the hierarchy reached 0.88 of flat FedBuff's NDCG@10.)

A region's weight per unit of time is then the samples it trains per unit of time. That is its share of
the data (the objective above) when trainers are paced by their event streams, as the trainer service
is; trainers that re-train a static dataset as fast as their compute allows count by compute instead,
and a small market's data is then over-trained (`facet bench federation --min-round-time` measures both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from facet.federation.staleness import StalenessWeight

Tensors = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class WeightedDelta:
    delta: Tensors
    #: A trainer's (bounded) sample count; for a zone step, its members' reference n̄_Z.
    num_samples: float
    staleness: int
    #: L2 norm of ``delta`` when known (validation computes it anyway); for reporting moves only.
    norm: float = 0.0
    #: Set for a zone's pre-weighted step: the most it may be scaled by (see "Zone steps" above).
    zone_headroom: float | None = None


class SampleReference:
    """The sample count n̄ that an update's n is measured against: the mean over applied updates, turning
    into an exponential average over ``horizon`` updates once more have been seen, so it follows a
    changing fleet. Checkpointed as (mean, count)."""

    def __init__(self, horizon: int, mean: float | None = None, count: int = 0) -> None:
        if horizon < 1:
            raise ValueError("horizon must be positive")
        self.horizon = horizon
        self.mean = mean
        self.count = count

    def observe(self, samples: float) -> None:
        self.count += 1
        if self.mean is None or self.count <= 1:
            self.mean = float(samples)
        else:
            self.mean += (samples - self.mean) / min(self.count, self.horizon)


def example_weight(num_samples: float, reference: float) -> float:
    """n / n̄: how many average updates' worth of examples this one carries."""
    if reference <= 0:
        raise ValueError("the sample reference must be positive")
    return num_samples / reference


def update_weight(update: WeightedDelta, staleness_weight: StalenessWeight, reference: float) -> float:
    """The total weight of one update: example weight × staleness weight, n s(τ) / n̄."""
    return example_weight(update.num_samples, reference) * staleness_weight(update.staleness)


def fedbuff_weights(
    updates: Sequence[WeightedDelta], staleness_weight: StalenessWeight, mean_samples: float | None = None,
    slots: int | None = None,
) -> list[float]:
    """Per-update coefficients n_k s(τ_k) / (K n̄), each at most 1 (no update counts for more than a whole
    step). n̄ defaults to the buffer's own mean, when they sum to 1 as long as no update is stale. K is the
    number of updates stepped, or ``slots`` (a zone's buffer size: a partly filled buffer stepped early
    then weighs each update as a full one would, as flat FedBuff does). A zone's step is already a step:
    s(τ_Z) min(n̄_Z / n̄, h_Z), not divided among the buffer."""
    total = sum(u.num_samples for u in updates)
    if total <= 0:
        raise ValueError("updates carry no samples")
    reference = total / len(updates) if mean_samples is None else mean_samples
    divisor = slots or len(updates)
    return [min(update_weight(u, staleness_weight, reference), u.zone_headroom) if u.zone_headroom is not None
            else min(update_weight(u, staleness_weight, reference) / divisor, 1.0) for u in updates]


def apply_delta(model: Mapping[str, torch.Tensor], delta: Tensors, scale: float) -> None:
    """w ← w + scale · Δ, in place (an axpy per tensor)."""
    for name, tensor in delta.items():
        model[name].add_(tensor, alpha=scale)


def fedbuff_step(
    model: Mapping[str, torch.Tensor],
    updates: Sequence[WeightedDelta],
    staleness_weight: StalenessWeight,
    server_lr: float = 1.0,
    mean_samples: float | None = None,
    slots: int | None = None,
) -> list[float]:
    """w ← w + η Σ c_k Δ_k; returns the scale each update was applied with (η c_k)."""
    # Applied update by update: the same sum without a model-sized temporary, and with row-sparse deltas
    # only the rows they touch are written.
    scales = [server_lr * c for c in fedbuff_weights(updates, staleness_weight, mean_samples, slots)]
    for update, scale in zip(updates, scales, strict=True):
        apply_delta(model, update.delta, scale)
    return scales


def fedasync_weight(
    update: WeightedDelta, staleness_weight: StalenessWeight, alpha: float, mean_samples: float | None = None
) -> float:
    """α s(τ) (n / n̄), at most 1: one update never moves the model past the trainer's own weights (a zone's
    step: at most its headroom, so none of its members does)."""
    reference = update.num_samples if mean_samples is None else mean_samples
    return min(alpha * update_weight(update, staleness_weight, reference), update.zone_headroom or 1.0)


def fedasync_step(
    model: Mapping[str, torch.Tensor],
    update: WeightedDelta,
    staleness_weight: StalenessWeight,
    alpha: float,
    mean_samples: float | None = None,
) -> float:
    """w ← w + α s(τ) (n / n̄) Δ; returns that scale."""
    scale = fedasync_weight(update, staleness_weight, alpha, mean_samples)
    apply_delta(model, update.delta, scale)
    return scale


def global_norm(tensors: Tensors) -> float:
    """L2 norm over every tensor, one streaming pass each (no temporaries the size of the model)."""
    squares = 0.0
    for tensor in tensors.values():
        values = tensor._values() if tensor.is_sparse else tensor  # decoded sparse rows are coalesced
        squares += float(torch.linalg.vector_norm(values, dtype=torch.float32)) ** 2
    return math.sqrt(squares)
