"""Training and scoring loops shared by the evaluation, the trainer service, the benchmarks and the
recommender, so every path trains and ranks with exactly the same code."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facet.model.features import ItemCatalogue
from facet.model.network import ModelConfig, SequenceRecommender

PAD = -1


@dataclass(frozen=True)
class Windows:
    """Right-padded training windows: inputs[w, t] predicts targets[w, t] (PAD where absent)."""

    inputs: np.ndarray
    targets: np.ndarray
    regions: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def samples(self) -> int:
        return int((self.targets != PAD).sum())

    def subset(self, rows: np.ndarray) -> Windows:
        return Windows(self.inputs[rows], self.targets[rows], self.regions[rows])


def make_windows(
    sequences: Sequence[tuple[int, Sequence[int]]], max_history: int
) -> Windows:
    """Cut (region bucket, item indices) sequences into windows of ``max_history`` predictions."""
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    regions: list[int] = []
    for region, items in sequences:
        for start in range(0, len(items) - 1, max_history):
            chunk = list(items[start : start + max_history + 1])
            pad = [PAD] * (max_history + 1 - len(chunk))
            inputs.append(chunk[:-1] + pad)
            targets.append(chunk[1:] + pad)
            regions.append(region)
    if not inputs:
        empty = np.zeros((0, max_history), dtype=np.int64)
        return Windows(empty, empty.copy(), np.zeros(0, dtype=np.int64))
    return Windows(
        np.asarray(inputs, dtype=np.int64),
        np.asarray(targets, dtype=np.int64),
        np.asarray(regions, dtype=np.int64),
    )


def catalogue_tensors(catalogue: ItemCatalogue) -> tuple[torch.Tensor, torch.Tensor]:
    buckets, attributes = catalogue.arrays()
    return torch.from_numpy(buckets), torch.from_numpy(attributes)


def _history_vectors(item_vectors: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    padded = torch.cat([item_vectors, item_vectors.new_zeros(1, item_vectors.shape[1])])
    return padded[torch.where(indices == PAD, item_vectors.shape[0], indices)]


@dataclass(frozen=True)
class TrainResult:
    loss: float
    samples: int
    steps: int
    seconds: float


def make_optimizer(model: nn.Module, lr: float = 3e-3) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr)


def train_batch(
    model: SequenceRecommender,
    optimizer: torch.optim.Optimizer,
    items: tuple[torch.Tensor, torch.Tensor],
    batch: Windows,
    candidates: torch.Tensor | None = None,
) -> tuple[float, int]:
    """One optimisation step on one batch of windows; returns (loss, samples).

    ``candidates`` (bool [N]) limits the softmax to items the training data has seen: an item that only
    exists in the catalogue must not be taught "never chosen" before anyone could choose it.
    """
    model.train()
    buckets, attributes = items
    inputs = torch.from_numpy(batch.inputs)
    targets = torch.from_numpy(batch.targets)
    item_vectors = model.item_vectors(buckets, attributes)
    states = model.shopper_states(_history_vectors(item_vectors, inputs), torch.from_numpy(batch.regions))
    valid = targets != PAD
    window_rows, ends = valid.nonzero(as_tuple=True)
    logits = model.scores(states[valid], item_vectors, buckets, inputs[window_rows], ends)
    if candidates is not None:
        logits = logits.masked_fill(~candidates, float("-inf"))
    loss = nn.functional.cross_entropy(logits, targets[valid])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return float(loss.detach()), int(valid.sum())


def train_epochs(
    model: SequenceRecommender,
    catalogue: ItemCatalogue,
    windows: Windows,
    *,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    optimizer = optimizer or make_optimizer(model)
    items = catalogue_tensors(catalogue)
    seen = np.zeros(len(catalogue), dtype=bool)
    seen[windows.inputs[windows.inputs != PAD]] = True
    seen[windows.targets[windows.targets != PAD]] = True
    candidates = torch.from_numpy(seen)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    losses: list[float] = []
    samples = steps = 0
    for _ in range(epochs):
        order = rng.permutation(len(windows))
        for start in range(0, len(order), batch_size):
            batch = windows.subset(order[start : start + batch_size])
            loss, count = train_batch(model, optimizer, items, batch, candidates)
            losses.append(loss)
            samples += count
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
    mean_loss = float(np.mean(losses[-50:])) if losses else float("nan")
    return TrainResult(mean_loss, samples, steps, time.perf_counter() - started)


@torch.no_grad()
def score_histories(
    model: SequenceRecommender,
    items: tuple[torch.Tensor, torch.Tensor],
    histories: Sequence[Sequence[int]],
    regions: Sequence[int],
    item_vectors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores of every catalogue item for each (history, region); an empty history is a cold shopper."""
    model.eval()
    buckets, attributes = items
    if item_vectors is None:
        item_vectors = model.item_vectors(buckets, attributes)
    length = model.config.max_history
    rows = np.full((len(histories), length), PAD, dtype=np.int64)
    last = np.zeros(len(histories), dtype=np.int64)
    for row, history in enumerate(histories):
        recent = list(history)[-length:]
        rows[row, : len(recent)] = recent
        last[row] = max(len(recent) - 1, 0)
    states = model.shopper_states(
        _history_vectors(item_vectors, torch.from_numpy(rows)), torch.as_tensor(regions, dtype=torch.int64)
    )
    ends = torch.from_numpy(last)
    chosen = states[torch.arange(len(histories)), ends]
    return model.scores(chosen, item_vectors, buckets, torch.from_numpy(rows), ends)


def new_model(config: ModelConfig, seed: int = 0) -> SequenceRecommender:
    torch.manual_seed(seed)
    return SequenceRecommender(config)
