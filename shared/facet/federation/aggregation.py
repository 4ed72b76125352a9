"""Staleness-weighted asynchronous FedAvg as pure functions over named tensors.

The seed's objective is the sample-weighted sum of client losses, min_w Σ_k (n_k/n) F_k(w). Every
update carries a delta Δ_k = w_k - w_base(k) and its sample count n_k. Facet applies

    FedBuff (K buffered updates):  w ← w + η · Σ_k n_k s(τ_k) Δ_k / Σ_k n_k
    FedAsync (one update at once): w ← w + α · s(τ) Δ

With every τ_k = 0 (or any equal staleness, up to the common factor s(τ)), the FedBuff step is exactly
sample-weighted FedAvg's: the property tests check that reduction. Staleness only ever shrinks a
contribution, never re-normalises it away: a buffer of very stale updates moves the model less.
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
    num_samples: int
    staleness: int


def fedbuff_weights(updates: Sequence[WeightedDelta], staleness_weight: StalenessWeight) -> list[float]:
    """Per-update coefficients n_k s(τ_k) / Σ n_k; they sum to 1 when no update is stale."""
    total = sum(u.num_samples for u in updates)
    if total <= 0:
        raise ValueError("updates carry no samples")
    return [u.num_samples * staleness_weight(u.staleness) / total for u in updates]


def combine(updates: Sequence[WeightedDelta], coefficients: Sequence[float]) -> dict[str, torch.Tensor]:
    """Σ_k c_k Δ_k, accumulated in place into one buffer per tensor (memory: one model)."""
    if not updates:
        raise ValueError("nothing to combine")
    combined = {name: torch.zeros_like(t) for name, t in updates[0].delta.items()}
    for update, coefficient in zip(updates, coefficients, strict=True):
        for name, tensor in update.delta.items():
            combined[name].add_(tensor, alpha=coefficient)
    return combined


def apply_delta(model: Mapping[str, torch.Tensor], delta: Tensors, scale: float) -> None:
    """w ← w + scale · Δ, in place (an axpy per tensor)."""
    for name, tensor in delta.items():
        model[name].add_(tensor, alpha=scale)


def fedbuff_step(
    model: Mapping[str, torch.Tensor],
    updates: Sequence[WeightedDelta],
    staleness_weight: StalenessWeight,
    server_lr: float = 1.0,
) -> None:
    # w + η Σ c_k Δ_k, applied update by update: the same sum without a model-sized temporary, and with
    # row-sparse deltas only the rows they touch are written.
    for update, coefficient in zip(updates, fedbuff_weights(updates, staleness_weight), strict=True):
        apply_delta(model, update.delta, server_lr * coefficient)


def fedasync_step(
    model: Mapping[str, torch.Tensor], update: WeightedDelta, staleness_weight: StalenessWeight, alpha: float
) -> None:
    apply_delta(model, update.delta, alpha * staleness_weight(update.staleness))


def global_norm(tensors: Tensors) -> float:
    """L2 norm over every tensor, one streaming pass each (no temporaries the size of the model)."""
    squares = 0.0
    for tensor in tensors.values():
        values = tensor._values() if tensor.is_sparse else tensor  # decoded sparse rows are coalesced
        squares += float(torch.linalg.vector_norm(values, dtype=torch.float32)) ** 2
    return math.sqrt(squares)
