"""One step of shopper-level DP-SGD (user-level DP-SGD, McMahan et al. 2018; Abadi et al. 2016):

1. Poisson sampling: every shopper of the region joins the step with probability ``sample_rate``,
   independently, so the accountant's sampling rate is the true one;
2. each sampled shopper's whole contribution (the mean loss over their windows) gives one gradient,
   clipped to ``clip_norm``;
3. the clipped gradients are summed, Gaussian noise N(0, (noise_multiplier · clip_norm)²) is added to
   *every* coordinate of every parameter (so the step shows nothing about which item rows were touched),
   and the sum is divided by the expected number of sampled shoppers;
4. the optimizer steps on that noisy gradient (post-processing: Adam keeps the guarantee).

Per-shopper gradients come from one forward pass and a batched backward over a chunk of shoppers. The
item tables are large (32k hashed rows) while a catalogue touches a few thousand, so the per-shopper
gradients are taken with respect to the catalogue's rows only (a compact copy of each table) and scattered
back afterwards: the same gradient, a tenth of the memory. Rows no catalogue item uses have a zero
gradient for every shopper; their noise is added all the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call

from facet.model.network import ItemTensors, SequenceRecommender
from facet.privacy.settings import PrivacySettings
from facet.privacy.shoppers import ShopperWindows

#: Tables whose rows are indexed by an item's id bucket, and the one indexed by attribute codes.
ROWS_BY_ITEM_BUCKET = ("item_id.weight", "item_bias.weight", "companion.weight")
ROWS_BY_ATTRIBUTE = ("attribute.weight",)


@dataclass(frozen=True)
class PrivateStep:
    loss: float
    shoppers: int
    samples: int
    #: Sampled shoppers whose gradient was longer than the clip norm (a high share: the bound is tight).
    clipped: int


class _CompactTables:
    """The catalogue's rows of the item tables as leaves, and the catalogue re-indexed onto them."""

    def __init__(self, model: SequenceRecommender, items: ItemTensors) -> None:
        buckets, attributes = items
        self.bucket_rows, compact_buckets = torch.unique(buckets, return_inverse=True)
        self.attribute_rows, compact_attributes = torch.unique(attributes, return_inverse=True)
        self.items: ItemTensors = (compact_buckets, compact_attributes)
        self.rows: dict[str, torch.Tensor] = {}
        self.leaves: dict[str, torch.Tensor] = {}
        for name, parameter in model.named_parameters():
            if name in ROWS_BY_ITEM_BUCKET:
                self.rows[name] = self.bucket_rows
            elif name in ROWS_BY_ATTRIBUTE:
                self.rows[name] = self.attribute_rows
            else:
                self.leaves[name] = parameter
                continue
            self.leaves[name] = parameter.detach()[self.rows[name]].requires_grad_()


def private_step(model: SequenceRecommender, optimizer: torch.optim.Optimizer, items: ItemTensors,
                 pool: ShopperWindows, settings: PrivacySettings, rng: np.random.Generator,
                 generator: torch.Generator, candidates: torch.Tensor | None = None) -> PrivateStep:
    """One DP-SGD step over ``pool`` (see the module's docstring). ``candidates`` must not depend on the
    shoppers' data (the catalogue is public: the store's product list)."""
    model.train()
    sampled = np.flatnonzero(rng.random(pool.shoppers) < settings.sample_rate)
    tables = _CompactTables(model, items)
    sums = {name: torch.zeros_like(leaf) for name, leaf in tables.leaves.items()}
    names = list(tables.leaves)
    leaves = [tables.leaves[name] for name in names]
    losses: list[float] = []
    samples = clipped = 0
    for start in range(0, len(sampled), settings.chunk_shoppers):
        chunk = sampled[start : start + settings.chunk_shoppers]
        windows, owners = pool.windows_of(chunk, settings.max_windows_per_shopper, rng)
        prediction_losses, window_rows = functional_call(model, tables.leaves, (tables.items, windows, candidates))
        shopper_of = torch.from_numpy(owners)[window_rows]
        counts = torch.bincount(shopper_of, minlength=len(chunk)).clamp(min=1)
        per_shopper = torch.zeros(len(chunk)).index_add(0, shopper_of, prediction_losses) / counts
        grads = torch.autograd.grad(per_shopper, leaves, grad_outputs=torch.eye(len(chunk)),
                                    is_grads_batched=True, allow_unused=True)
        present = [g for g in grads if g is not None]
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in present))
        factors = (settings.clip_norm / (norms + 1e-12)).clamp(max=1.0)
        for name, grad in zip(names, grads, strict=True):
            if grad is not None:
                sums[name] += torch.tensordot(factors, grad, dims=1)
        losses.append(float(per_shopper.detach().sum()))
        samples += len(prediction_losses)
        clipped += int((norms > settings.clip_norm).sum())
    sigma = settings.noise_multiplier() * settings.clip_norm
    expected_shoppers = settings.sample_rate * max(pool.shoppers, 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noisy = torch.randn(parameter.shape, generator=generator) * sigma
            if name in tables.rows:
                noisy.index_add_(0, tables.rows[name], sums[name])
            else:
                noisy += sums[name]
            parameter.grad = noisy / expected_shoppers
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return PrivateStep(loss=sum(losses) / len(sampled) if len(sampled) else float("nan"),
                       shoppers=len(sampled), samples=samples, clipped=clipped)
