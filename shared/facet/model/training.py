"""The one training loop. Centralized evaluation, the federated learners (benchmarks and the trainer
service) and every test train through :func:`train_pass`, with the model's own loss over one candidate
set, the items in the training data (:func:`candidates_seen_in`), so "federated vs centralized" compares
one objective."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facet.model.examples import Windows
from facet.model.features import ItemCatalogue
from facet.model.network import ItemTensors, SequenceRecommender

#: Gradient-norm clip per step: keeps one odd batch from throwing a fresh model far off.
GRADIENT_CLIP = 5.0


@dataclass(frozen=True)
class TrainResult:
    loss: float
    samples: int
    steps: int
    seconds: float


def catalogue_tensors(catalogue: ItemCatalogue) -> ItemTensors:
    buckets, attributes = catalogue.arrays()
    return torch.from_numpy(buckets), torch.from_numpy(attributes)


def candidates_seen_in(windows: Iterable[Windows], items: int) -> torch.Tensor:
    """The softmax's candidates: the items that occur in ``windows`` (the training data), as bool [items]."""
    mask = np.zeros(items, dtype=bool)
    for part in windows:
        mask[part.items()] = True
    return torch.from_numpy(mask)


def make_optimizer(model: nn.Module, lr: float = 3e-3) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr)


def train_batch(model: SequenceRecommender, optimizer: torch.optim.Optimizer, items: ItemTensors,
                batch: Windows, candidates: torch.Tensor | None) -> tuple[float, int]:
    """One optimisation step on one batch of windows; returns (loss, predictions)."""
    model.train()
    loss, count = model.loss(items, batch, candidates)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP)
    optimizer.step()
    return float(loss.detach()), count


def train_pass(model: SequenceRecommender, optimizer: torch.optim.Optimizer, items: ItemTensors,
               windows: Windows, *, batch_size: int, candidates: torch.Tensor | None,
               order: np.ndarray | None = None) -> TrainResult:
    """One pass over ``windows`` in ``order`` (default: as given), ``batch_size`` windows a step."""
    rows = np.arange(len(windows)) if order is None else order
    started = time.perf_counter()
    losses: list[float] = []
    samples = 0
    for start in range(0, len(rows), batch_size):
        loss, count = train_batch(model, optimizer, items, windows.subset(rows[start : start + batch_size]),
                                  candidates)
        losses.append(loss)
        samples += count
    mean_loss = float(np.mean(losses[-50:])) if losses else float("nan")
    return TrainResult(mean_loss, samples, len(losses), time.perf_counter() - started)


def train_epochs(
    model: SequenceRecommender,
    catalogue: ItemCatalogue,
    windows: Windows,
    *,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
) -> TrainResult:
    """Centralized training: ``epochs`` shuffled passes over a fixed set of windows, the same for the
    same seed (order and dropout), without touching torch's global RNG."""
    optimizer = optimizer or make_optimizer(model)
    items = catalogue_tensors(catalogue)
    candidates = candidates_seen_in([windows], len(catalogue))
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        results = [train_pass(model, optimizer, items, windows, batch_size=batch_size, candidates=candidates,
                              order=rng.permutation(len(windows))) for _ in range(epochs)]
    return TrainResult(results[-1].loss if results else float("nan"), sum(r.samples for r in results),
                       sum(r.steps for r in results), sum(r.seconds for r in results))
