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


def list_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each row's target in its ranked list ([B, k] item indices); k when it is not
    in the list (a miss at that cut-off: only metrics at k or less can be read from these ranks)."""
    found = ranked == targets[:, None]
    return np.where(found.any(axis=1), found.argmax(axis=1), ranked.shape[1]).astype(np.float64)


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
