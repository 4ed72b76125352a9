"""The baselines every model must beat, computed on the same split: pure numpy/scipy scorers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from facet.evaluation.scoring import Scorer
from facet.evaluation.split import Split, TestCase
from scipy import sparse


def _popularity(split: Split) -> np.ndarray:
    counts = np.zeros(len(split.catalogue), dtype=np.float64)
    for _region, items in split.train.values():
        np.add.at(counts, items, 1.0)
    return counts


def popularity(split: Split) -> Scorer:
    counts = _popularity(split)
    return lambda cases: np.broadcast_to(counts, (len(cases), counts.size)).copy()


def regional_popularity(split: Split) -> Scorer:
    base = _popularity(split)
    per_region: dict[str, np.ndarray] = {}
    for region, items in split.train.values():
        counts = per_region.setdefault(region, np.zeros_like(base))
        np.add.at(counts, items, 1.0)
    # The global count breaks ties, so a tiny region still gets a full ranking.
    tie_break = base / (base.max() + 1.0)
    return lambda cases: np.stack([per_region.get(c.region, np.zeros_like(base)) + tie_break for c in cases])


def _history_matrix(cases: Sequence[TestCase], items: int) -> sparse.csr_matrix:
    rows = [row for row, case in enumerate(cases) for _ in case.history]
    cols = [item for case in cases for item in case.history]
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(cases), items))


def item_knn(split: Split) -> Scorer:
    """Item-item cosine similarity over shopper co-occurrence; a shopper scores the sum over history."""
    items = len(split.catalogue)
    rows = [row for row, (_r, seq) in enumerate(split.train.values()) for _ in seq]
    cols = [item for _r, seq in split.train.values() for item in seq]
    interactions = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(split.train), items))
    interactions.data[:] = 1.0  # presence, not counts
    co = (interactions.T @ interactions).tocsr()
    norms = np.sqrt(co.diagonal()) + 1e-9
    similarity = sparse.diags(1 / norms) @ co @ sparse.diags(1 / norms)
    similarity.setdiag(0)
    tie_break = _popularity(split) * 1e-9
    return lambda cases: np.asarray((_history_matrix(cases, items) @ similarity).todense()) + tie_break


def last_item_cooccurrence(split: Split) -> Scorer:
    """Counts of 'b right after a' in training sequences; score the row of the shopper's last item."""
    items = len(split.catalogue)
    sources = [a for _r, seq in split.train.values() for a in seq[:-1]]
    destinations = [b for _r, seq in split.train.values() for b in seq[1:]]
    transitions = sparse.csr_matrix((np.ones(len(sources)), (sources, destinations)), shape=(items, items))
    tie_break = _popularity(split) * 1e-9

    def score(cases: Sequence[TestCase]) -> np.ndarray:
        last = [case.history[-1] if case.history else 0 for case in cases]
        rows = np.asarray(transitions[last].todense())
        rows[[i for i, c in enumerate(cases) if not c.history]] = 0
        return rows + tie_break

    return score


BASELINES: dict[str, Callable[[Split], Scorer]] = {
    "popularity": popularity,
    "regional_popularity": regional_popularity,
    "item_knn": item_knn,
    "last_item_cooccurrence": last_item_cooccurrence,
}
