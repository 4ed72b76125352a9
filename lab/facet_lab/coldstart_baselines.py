"""Content baselines for launches (``facet eval --cold-start``): what a merchandiser could do without a
learned model, computed on the same split as the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from facet.evaluation.launches import LaunchSplit
from facet.evaluation.scoring import Scorer
from facet.evaluation.split import TestCase
from facet.model.coldstart import CATEGORY, METAL
from scipy import sparse

#: The shopper's recent items a content profile is built from, newest weighted most.
PROFILE_ITEMS = 3
#: How much each attribute slot counts in the similarity: category, metal, gem, colour, gender, brand,
#: price band (the order of facet.model.features.ATTRIBUTE_FIELDS, then the price band).
SIMILARITY_WEIGHTS = np.array([2.0, 2.0, 2.0, 1.0, 0.5, 1.0, 1.0])


def _attribute_one_hot(attributes: np.ndarray, buckets: int) -> sparse.csr_matrix:
    """[N, attribute buckets]: each item's attribute codes, weighted by slot (the weights sum to 1)."""
    items, slots = attributes.shape
    weights = np.tile(SIMILARITY_WEIGHTS[:slots] / SIMILARITY_WEIGHTS[:slots].sum(), items)
    rows = np.repeat(np.arange(items), slots)
    return sparse.csr_matrix((weights, (rows, attributes.reshape(-1))), shape=(items, buckets))


def content_similarity(launch: LaunchSplit) -> Scorer:
    """Attribute similarity (category, metal, gem, colour, gender, brand, price band) of every item to the
    shopper's last few items, plus log(1 + how often an item came right before or after the last item in
    training) for warm items: a new item competes on its attributes, a warm one also on co-occurrence."""
    split = launch.split
    items = len(split.catalogue)
    attributes = split.catalogue.arrays()[1]
    one_hot = _attribute_one_hot(attributes, int(attributes.max()) + 1 if attributes.size else 1)
    presence = (one_hot > 0).astype(np.float64)
    sources = [a for _r, seq in split.train.values() for a in seq[:-1]]
    targets = [b for _r, seq in split.train.values() for b in seq[1:]]
    transitions = sparse.csr_matrix((np.ones(len(sources)), (sources, targets)), shape=(items, items))
    together = (transitions + transitions.T).tocsr()

    def score(cases: Sequence[TestCase]) -> np.ndarray:
        recent = [list(case.history[-PROFILE_ITEMS:]) for case in cases]
        rows = [row for row, items_ in enumerate(recent) for _ in items_]
        cols = [item for items_ in recent for item in items_]
        weights = [0.5 ** (len(items_) - 1 - k) for items_ in recent for k in range(len(items_))]
        profile = sparse.csr_matrix((weights, (rows, cols)), shape=(len(cases), items)) @ one_hot
        similarity = np.asarray((profile @ presence.T).todense())
        last = [case.history[-1] for case in cases]
        return similarity + np.log1p(np.asarray(together[last].todense()))

    return score


def newest_matching(launch: LaunchSplit) -> Scorer:
    """Items matching the category and metal of the shopper's last item first, newest first within each
    group (the new collection ties: it launched at once), then every other item, newest first."""
    attributes = launch.split.catalogue.arrays()[1]
    launched = np.where(launch.new_items, launch.cutoff, launch.first_seen)
    newness = np.argsort(np.argsort(launched, kind="stable"), kind="stable").astype(np.float64)
    newness[launch.new_items] = len(launched)  # one launch: no order among the new collection
    newness /= len(launched) + 1

    def score(cases: Sequence[TestCase]) -> np.ndarray:
        last = attributes[[case.history[-1] for case in cases]]
        matching = (attributes[None, :, CATEGORY] == last[:, None, CATEGORY]) & (
            attributes[None, :, METAL] == last[:, None, METAL])
        return matching + newness[None, :]

    return score


COLD_START_BASELINES: dict[str, Callable[[LaunchSplit], Scorer]] = {
    "content_similarity": content_similarity,
    "newest_matching": newest_matching,
}
