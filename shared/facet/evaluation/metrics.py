"""Ranking metrics as pure functions over score matrices."""

from __future__ import annotations

import numpy as np

K = 10


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among all items; ties count half (random tie-breaking)."""
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    greater = (scores > target_scores).sum(axis=1)
    ties = (scores == target_scores).sum(axis=1) - 1
    return greater + ties / 2.0


def hit_rate(ranks: np.ndarray, k: int = K) -> float:
    return float((ranks < k).mean()) if len(ranks) else float("nan")


def ndcg(ranks: np.ndarray, k: int = K) -> float:
    """NDCG@k with one relevant item: 1/log2(rank+2) inside the top k."""
    if not len(ranks):
        return float("nan")
    gains = np.where(ranks < k, 1.0 / np.log2(np.floor(ranks) + 2.0), 0.0)
    return float(gains.mean())


def summarize(ranks: np.ndarray, k: int = K) -> dict[str, float | int]:
    return {"hr10": hit_rate(ranks, k), "ndcg10": ndcg(ranks, k), "users": len(ranks)}
