"""One step of shopper-level DP-SGD (user-level DP-SGD, McMahan et al. 2018; Abadi et al. 2016):

1. Poisson sampling: every shopper of the region joins the step with probability ``sample_rate``,
   independently, so the accountant's sampling rate is the true one;
2. each sampled shopper's whole contribution (the mean loss over their windows) gives one gradient,
   clipped to ``clip_norm``;
3. the clipped gradients are summed, Gaussian noise N(0, (noise_multiplier · clip_norm)²) is added to
   *every* coordinate of every parameter (so the step shows nothing about which item rows were touched),
   and the sum is divided by the expected number of sampled shoppers;
4. the optimizer steps on that noisy gradient (post-processing: Adam keeps the guarantee).

Per-shopper gradients come from ``torch.func.vmap`` over a chunk of shoppers of ``grad`` of one
shopper's loss (the model's dense forward: each shopper's windows padded to the chunk's most; it reaches
the attribute rows without forming the [catalogue, dim] item vectors, whose per-shopper gradient made a
step's cost per sample grow with the catalogue). The item
tables are large (32k hashed rows) while a catalogue touches a few thousand, so the per-shopper
gradients are taken with respect to the catalogue's rows only (a compact copy of each table) and scattered
back afterwards: the same gradient, a tenth of the memory. Rows no catalogue item uses have a zero
gradient for every shopper; their noise is added all the same.

Parameters named in ``frozen_parameters`` are not trained: they get no gradient and no noise, so their
delta is exactly zero everywhere, which shows nothing either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from facet.model.examples import PAD
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

    def __init__(self, model: SequenceRecommender, items: ItemTensors, frozen: tuple[str, ...]) -> None:
        buckets, attributes = items
        self.bucket_rows, compact_buckets = torch.unique(buckets, return_inverse=True)
        self.attribute_rows, compact_attributes = torch.unique(attributes, return_inverse=True)
        self.items: ItemTensors = (compact_buckets, compact_attributes)
        self.rows: dict[str, torch.Tensor] = {}
        self.leaves: dict[str, torch.Tensor] = {}
        #: The parameters trained (with a per-shopper gradient), in order.
        self.trained: list[str] = []
        for name, parameter in model.named_parameters():
            if name in ROWS_BY_ITEM_BUCKET:
                self.rows[name] = self.bucket_rows
            elif name in ROWS_BY_ATTRIBUTE:
                self.rows[name] = self.attribute_rows
            if name in frozen:
                self.leaves[name] = (parameter.detach()[self.rows[name]] if name in self.rows else parameter.detach())
                continue
            self.trained.append(name)
            self.leaves[name] = parameter.detach()[self.rows[name]].requires_grad_() if name in self.rows else parameter


def _padded_by_shopper(pool: ShopperWindows, shoppers: np.ndarray, limit: int, rng: np.random.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shoppers' windows as [S, K, L] inputs and targets and [S, K] regions, K the most any of them has
    (at most ``limit``) and L their longest window; missing windows and positions are padding and add
    nothing to the loss. (Windows are right-padded and the encoder is causal, so cutting the columns that
    are padding in every window changes no state.)"""
    windows, owners = pool.windows_of(shoppers, limit, rng)
    per_shopper = np.bincount(owners, minlength=len(shoppers))
    depth = max(1, int(per_shopper.max(initial=0)))
    slot = np.arange(len(owners)) - np.repeat(np.cumsum(per_shopper) - per_shopper, per_shopper)
    length = max(1, int((windows.targets != PAD).sum(axis=1).max(initial=0)))
    inputs = np.full((len(shoppers), depth, length), PAD, dtype=np.int64)
    targets = np.full((len(shoppers), depth, length), PAD, dtype=np.int64)
    regions = np.zeros((len(shoppers), depth), dtype=np.int64)
    inputs[owners, slot] = windows.inputs[:, :length]
    targets[owners, slot] = windows.targets[:, :length]
    regions[owners, slot] = windows.regions
    return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(regions)


def private_step(model: SequenceRecommender, optimizer: torch.optim.Optimizer, items: ItemTensors,
                 pool: ShopperWindows, settings: PrivacySettings, rng: np.random.Generator,
                 generator: torch.Generator, candidates: torch.Tensor | None = None) -> PrivateStep:
    """One DP-SGD step over ``pool`` (see the module's docstring). ``candidates`` must not depend on the
    shoppers' data (the catalogue is public: the store's product list)."""
    model.train()
    sampled = np.flatnonzero(rng.random(pool.shoppers) < settings.sample_rate)
    sampled = pool.by_size(sampled, settings.max_windows_per_shopper)  # chunks of alike shoppers pad little
    tables = _CompactTables(model, items, settings.frozen_parameters)
    names = tables.trained
    sums = {name: torch.zeros_like(tables.leaves[name]) for name in names}
    losses: list[float] = []
    samples = clipped = 0
    frozen = {name: leaf for name, leaf in tables.leaves.items() if name not in sums}

    def shopper_loss(trained: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
                     regions: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        total, count = functional_call(model, {**trained, **frozen}, (tables.items, inputs, targets, regions,
                                                                       candidates))
        mean = total / count.clamp(min=1)
        return mean, (mean.detach(), count)

    per_shopper_gradients = vmap(grad(shopper_loss, has_aux=True), in_dims=(None, 0, 0, 0), randomness="same")
    trained = {name: tables.leaves[name] for name in names}
    for start in range(0, len(sampled), settings.chunk_shoppers):
        chunk = sampled[start : start + settings.chunk_shoppers]
        inputs, targets, regions = _padded_by_shopper(pool, chunk, settings.max_windows_per_shopper, rng)
        grads, (shopper_losses, counts) = per_shopper_gradients(trained, inputs, targets, regions)
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
        factors = (settings.clip_norm / (norms + 1e-12)).clamp(max=1.0)
        for name, gradient in grads.items():
            sums[name] += torch.tensordot(factors, gradient, dims=1)
        losses.append(float(shopper_losses.sum()))
        samples += int(counts.sum())
        clipped += int((norms > settings.clip_norm).sum())
    sigma = settings.noise_multiplier() * settings.clip_norm
    expected_shoppers = settings.sample_rate * max(pool.shoppers, 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name not in sums:
                parameter.grad = None  # frozen: Adam leaves it exactly as it is
                continue
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
