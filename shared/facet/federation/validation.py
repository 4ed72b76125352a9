"""Checks an update must pass before it may touch the global model. Each failure has a reason code
(a metric label) and never raises anything but :class:`UpdateRejected`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch

from facet.errors import PoisonMessageError
from facet.federation.aggregation import global_norm


class UpdateRejected(PoisonMessageError):
    """An update that must not be applied; ``reason`` labels the rejection metric."""


TensorSpec = Mapping[str, tuple[tuple[int, ...], torch.dtype]]


def spec_of(model: Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {name: (tuple(t.shape), t.dtype) for name, t in model.items()}


def check_staleness(base_version: int, current_version: int, max_staleness: int) -> int:
    if base_version > current_version:
        raise UpdateRejected("future_version", f"base version {base_version} > current {current_version}")
    staleness = current_version - base_version
    if staleness > max_staleness:
        raise UpdateRejected("too_stale", f"staleness {staleness} > max {max_staleness}")
    return staleness


def check_delta(
    delta: Mapping[str, torch.Tensor],
    spec: TensorSpec,
    *,
    max_norm: float,
    on_large_norm: Literal["clip", "reject"] = "clip",
) -> tuple[dict[str, torch.Tensor], float]:
    """Names, shapes, dtypes, finiteness and norm; returns the delta (clipped when configured) and its norm."""
    if set(delta) != set(spec):
        missing, extra = sorted(set(spec) - set(delta)), sorted(set(delta) - set(spec))
        raise UpdateRejected("wrong_tensors", f"missing {missing[:3]}, unexpected {extra[:3]}")
    for name, tensor in delta.items():
        shape, dtype = spec[name]
        if tuple(tensor.shape) != shape:
            raise UpdateRejected("wrong_shape", f"{name}: {tuple(tensor.shape)} != {shape}")
        if tensor.dtype != dtype:
            raise UpdateRejected("wrong_dtype", f"{name}: {tensor.dtype} != {dtype}")
    # One pass for both checks: NaN or Inf anywhere makes the norm non-finite (so does a value so large
    # its square overflows, which is no legitimate delta either).
    norm = global_norm(delta)
    if not math.isfinite(norm):
        bad = next((n for n, t in delta.items() if not math.isfinite(global_norm({n: t}))), "?")
        raise UpdateRejected("non_finite", f"{bad} holds NaN or Inf (or overflows)")
    if norm > max_norm:
        if on_large_norm == "reject":
            raise UpdateRejected("norm_too_large", f"norm {norm:.3g} > {max_norm:.3g}")
        factor = max_norm / norm
        return {name: tensor * factor for name, tensor in delta.items()}, max_norm  # sparse stays sparse
    return dict(delta), norm
