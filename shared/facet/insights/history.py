"""The model versions insights compare: the newest few (for the spread of each figure) and one per
hour for the last week (for what is rising over a day or a week), in bounded memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Snapshot:
    version: int
    epoch: int
    at: float  # epoch seconds this process loaded it
    #: [R, N_at_that_time] demand, float32 (items announced later are absent: zero demand then).
    demand: np.ndarray

    def over(self, items: int) -> np.ndarray:
        """Demand over the first ``items`` catalogue items (items newer than the snapshot at 0)."""
        if self.demand.shape[1] >= items:
            return self.demand[:, :items].astype(np.float64)
        padded = np.zeros((self.demand.shape[0], items))
        padded[:, : self.demand.shape[1]] = self.demand
        return padded


@dataclass
class DemandHistory:
    recent: int = 5
    spacing_s: float = 3600.0
    horizon_s: float = 8 * 86_400.0
    _recent: list[Snapshot] = field(default_factory=list)
    _spaced: list[Snapshot] = field(default_factory=list)

    def add(self, snapshot: Snapshot) -> None:
        self._recent = [*self._recent, snapshot][-self.recent:]
        if not self._spaced or snapshot.at - self._spaced[-1].at >= self.spacing_s:
            self._spaced.append(snapshot)
        self._spaced = [s for s in self._spaced if snapshot.at - s.at <= self.horizon_s]

    @property
    def latest(self) -> Snapshot | None:
        return self._recent[-1] if self._recent else None

    def recent_snapshots(self) -> list[Snapshot]:
        return list(self._recent)

    def at_or_before(self, when: float) -> Snapshot | None:
        """The newest kept snapshot loaded no later than ``when``; else the oldest kept (short history)."""
        kept = sorted({id(s): s for s in [*self._spaced, *self._recent]}.values(), key=lambda s: s.at)
        if not kept:
            return None
        earlier = [s for s in kept if s.at <= when]
        return earlier[-1] if earlier else kept[0]
