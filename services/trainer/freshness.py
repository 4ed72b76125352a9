"""How long an event takes to reach a served model: from its acceptance at ingest (the Kafka record's
timestamp, set when ingest wrote it) to the first broadcast whose contributing updates include the update
that covered it. The trainer follows the same models topic as the recommenders, so the broadcast it sees
is the one they load; the figure is per event, not per update."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class FreshnessTracker:
    """Acceptance times of the events each sent update covered, until a broadcast includes the update.

    Bounded: at most ``max_updates`` updates are awaited (an update that is rejected, dropped or never
    broadcast is forgotten oldest first) and at most ``max_events`` times are kept per update (beyond it a
    uniform reservoir, so the distribution stays unbiased)."""

    def __init__(self, max_updates: int = 256, max_events: int = 16_384, seed: int = 0) -> None:
        self.max_updates = max_updates
        self.max_events = max_events
        self._rng = np.random.default_rng(seed)
        self._pending: list[float] = []
        self._seen = 0
        self._awaiting: OrderedDict[str, np.ndarray] = OrderedDict()

    def covered(self, accepted_at: float) -> None:
        """One event (its acceptance time, seconds since the epoch) goes into the next update."""
        self._seen += 1
        if len(self._pending) < self.max_events:
            self._pending.append(accepted_at)
            return
        slot = int(self._rng.integers(self._seen))  # reservoir sampling (Algorithm R)
        if slot < self.max_events:
            self._pending[slot] = accepted_at

    def sent(self, update_id: str) -> int:
        """The events covered so far went out in ``update_id``; returns how many older updates were forgotten
        unmatched to make room (rejected, dropped, or never broadcast)."""
        forgotten = 0
        if self._pending:
            self._awaiting[update_id] = np.asarray(self._pending)
            while len(self._awaiting) > self.max_updates:
                self._awaiting.popitem(last=False)
                forgotten += 1
        self._pending = []
        self._seen = 0
        return forgotten

    def served(self, update_ids: tuple[str, ...] | list[str], now: float) -> np.ndarray:
        """Seconds from acceptance to ``now`` for every event the broadcast's updates covered (each event
        is counted once: at the first broadcast that includes its update)."""
        waits = [now - self._awaiting.pop(u) for u in update_ids if u in self._awaiting]
        return np.concatenate(waits) if waits else np.zeros(0)
