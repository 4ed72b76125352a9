"""Export opportunities: pieces strong in region A that the model expects region B to take to, although
they are not among what B already buys most.

"Already buys" is read from B's own noisy interest counts where they are published (an item whose count
stands clear of the noise), else from the model: B's own top of the demand ranking (``established_share``
of the catalogue). Among A's
strongest pieces outside that set, the ones B's demand ranks highest come first; the expected lift is
B's demand for the piece over B's demand for an average piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Opportunity:
    item: int
    #: Demand in A over an average piece's, and the same in B (the expected lift there).
    strength_in_source: float
    expected_lift: float


def established(demand_row: np.ndarray, share: float) -> np.ndarray:
    """bool [N]: the top ``share`` of a region's items by demand (at least one)."""
    count = max(1, round(share * len(demand_row)))
    mask = np.zeros(len(demand_row), dtype=bool)
    mask[np.argsort(-demand_row, kind="stable")[:count]] = True
    return mask


def candidates(demand: np.ndarray, source: int, target: int, *, strong_share: float = 0.1,
               established_share: float = 0.1, eligible: np.ndarray | None = None,
               established_in_target: np.ndarray | None = None) -> np.ndarray:
    """Indices of items strong in ``source`` and not established in ``target`` (and ``eligible``).
    ``established_in_target`` (bool [N], from the target's own counts) replaces the model's view."""
    if established_in_target is None:
        established_in_target = established(demand[target], established_share)
    keep = established(demand[source], strong_share) & ~established_in_target
    if eligible is not None:
        keep &= eligible
    return np.flatnonzero(keep)


def opportunities(demand: np.ndarray, source: int, target: int, k: int = 20, *, strong_share: float = 0.1,
                  established_share: float = 0.1, eligible: np.ndarray | None = None,
                  established_in_target: np.ndarray | None = None) -> list[Opportunity]:
    """The top ``k`` opportunities from region ``source`` into region ``target`` ([R, N] demand)."""
    pool = candidates(demand, source, target, strong_share=strong_share, established_share=established_share,
                      eligible=eligible, established_in_target=established_in_target)
    items = len(demand[target])
    order = pool[np.argsort(-demand[target, pool], kind="stable")][:k]
    return [Opportunity(int(i), float(demand[source, i] * items), float(demand[target, i] * items))
            for i in order]
