"""What is rising where: the change of each region's demand between two versions of the global model.

The model moves as the regions' recent behaviour trains it, so a piece whose share of a region's demand
grows from one day's model to the next is rising there, seen through nothing but the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Shares are compared in log space above this floor, so a piece going from nothing to almost nothing
#: does not outrank one that doubled from a real share.
SHARE_FLOOR = 1e-4


@dataclass(frozen=True)
class Rise:
    index: int
    share_before: float
    share_now: float

    @property
    def growth(self) -> float:
        """How many times its share grew (floored shares)."""
        return max(self.share_now, SHARE_FLOOR) / max(self.share_before, SHARE_FLOOR)


def rising(before: np.ndarray, now: np.ndarray, k: int = 10, floor: float = SHARE_FLOOR) -> list[Rise]:
    """The ``k`` entries of a share vector whose share grew most (ratio of floored shares), growing only."""
    before_f, now_f = np.maximum(before, floor), np.maximum(now, floor)
    growth = np.log(now_f) - np.log(before_f)
    order = [int(i) for i in np.argsort(-growth, kind="stable")[:k] if growth[i] > 0]
    return [Rise(i, float(before[i]), float(now[i])) for i in order]
