"""What a region has spent: Opacus' RDP accountant fed with the true sampling rate and step count, and a
budget per period that a trainer must ask before every step."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

from facet.privacy.settings import RDP_ORDERS, PrivacySettings

#: (settings, steps taken) → epsilon at the settings' delta. The real one is :func:`spent_epsilon`; the
#: audit's tests swap in a broken one to show the audit catching it.
Accountant = Callable[[PrivacySettings, int], float]


def spent_epsilon(settings: PrivacySettings, steps: int) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at the settings' rate and noise."""
    if steps <= 0:
        return 0.0
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(settings.noise_multiplier(), settings.sample_rate, steps)]
    with warnings.catch_warnings():  # "optimal order is the largest": a looser bound, never an unsafe one
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta=settings.delta, alphas=RDP_ORDERS))


class PrivacyBudget:
    """One region's budget: ``steps_per_period`` DP-SGD steps per period, paced over it when asked.

    Periods are aligned to the epoch (``floor(now / period)``), so every replica and restart agrees on
    when one rolls. Each replica keeps its own budget: events are keyed by shopper, so replicas train
    disjoint shoppers and their guarantees compose in parallel. A rebalance inside a period can leave one
    shopper in two replicas' windows, which at worst doubles that shopper's epsilon for that period.
    """

    def __init__(self, settings: PrivacySettings, *, clock: Callable[[], float] = time.time,
                 accountant: Accountant = spent_epsilon) -> None:
        self.settings = settings
        self.clock = clock
        self.accountant = accountant
        self._period = self._period_of(clock())
        self.steps = 0

    def _period_of(self, now: float) -> int:
        return math.floor(now / self.settings.period_seconds)

    def _roll(self) -> None:
        period = self._period_of(self.clock())
        if period != self._period:
            self._period, self.steps = period, 0

    @property
    def period_started_at(self) -> float:
        return self._period * self.settings.period_seconds

    @property
    def period_ends_at(self) -> float:
        return (self._period + 1) * self.settings.period_seconds

    def epsilon(self) -> float:
        """Epsilon spent in the current period."""
        self._roll()
        return self.accountant(self.settings, self.steps)

    def steps_allowed(self) -> int:
        """Steps that may be taken now: what is left of the period's, and, when paced, no more than its
        share of the period so far (plus a burst)."""
        self._roll()
        left = self.settings.steps_per_period - self.steps
        if self.settings.pace:
            elapsed = (self.clock() - self.period_started_at) / self.settings.period_seconds
            share = math.floor(self.settings.steps_per_period * elapsed) + self.settings.burst_steps
            left = min(left, share - self.steps)
        return max(0, left)

    @property
    def exhausted(self) -> bool:
        """Every step of this period is spent: the trainer contributes nothing until it rolls."""
        self._roll()
        return self.steps >= self.settings.steps_per_period

    def spend(self, steps: int) -> None:
        self._roll()
        if steps > self.settings.steps_per_period - self.steps:
            raise RuntimeError(f"{steps} steps exceed the {self.settings.steps_per_period - self.steps} left")
        self.steps += steps
