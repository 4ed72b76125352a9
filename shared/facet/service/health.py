"""Health that means something: liveness proves the consume loop turns, readiness names what is missing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Health:
    #: The consume loop must tick at least this often to count as alive.
    stall_after_s: float = 60.0
    last_tick: float = field(default_factory=time.monotonic)
    conditions: dict[str, bool] = field(default_factory=dict)

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def set(self, condition: str, ok: bool) -> None:
        self.conditions[condition] = ok

    def alive(self) -> tuple[bool, dict[str, object]]:
        age = time.monotonic() - self.last_tick
        return age < self.stall_after_s, {"loop_age_s": round(age, 2)}

    def ready(self) -> tuple[bool, dict[str, object]]:
        alive, detail = self.alive()
        missing = [name for name, ok in self.conditions.items() if not ok]
        return alive and not missing, {**detail, "missing": missing}
