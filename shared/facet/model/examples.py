"""Training examples as right-padded windows of next-item predictions, and how sequences become them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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

    def items(self) -> np.ndarray:
        """Every item index these windows hold, as input or target (with repeats)."""
        return np.concatenate([self.inputs[self.inputs != PAD], self.targets[self.targets != PAD]])


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
