"""Releases of noisy interest counts: the trainer's window of who touched what, the release it closes into,
and the checks a receiver makes before it believes one.

A window covers one release interval (the statistics period over its releases, aligned to the epoch so
every replica and restart agrees). Events are counted by when the trainer reads them, not by the
``occurred_at`` a storefront claims, so a shopper is in at most one window per interval per replica.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facet.contracts import BehaviourEvent, InterestCounts
from facet.errors import PoisonMessageError
from facet.insights.statistics import CODEC, SENSITIVITY, CountSpace, decode_counts, encode_counts, interest_counts
from facet.privacy.settings import ReleasePrivacy


class StatisticsSettings(BaseModel):
    """What a regional trainer publishes about its shoppers beside its updates, and at what privacy cost."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    #: Its own budget, separate from the model's: ``steps_per_period`` releases per period at sampling rate 1.
    privacy: ReleasePrivacy = Field(default_factory=ReleasePrivacy)
    value_buckets: int = Field(default=65_536, ge=16, le=2**21)
    #: Memory bounds of a window. A shopper past the cap is not counted (never evicted: an evicted shopper
    #: who came back would count twice); items past a shopper's cap are not counted either.
    max_shoppers: int = Field(default=200_000, ge=1)
    max_items_per_shopper: int = Field(default=64, ge=1, le=4_096)
    #: Closed releases waiting for an update to ride on; the oldest is dropped beyond this.
    max_pending: int = Field(default=4, ge=1, le=64)

    def space(self, id_buckets: int) -> CountSpace:
        return CountSpace(id_buckets=id_buckets, value_buckets=self.value_buckets)


@dataclass(frozen=True)
class ClosedWindow:
    start: datetime
    end: datetime
    shoppers: int
    counts: np.ndarray


class InterestWindow:
    """The shoppers read in the current release interval, each with the distinct items they touched."""

    def __init__(self, settings: StatisticsSettings, space: CountSpace, item_bucket: Callable[[str], int], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.space, self.item_bucket, self.clock = settings, space, item_bucket, clock
        self._interval = self._interval_of(clock())
        self._shoppers: dict[str, dict[int, tuple[int, ...]]] = {}
        #: Shoppers left out of this window because it was full.
        self.refused_shoppers = 0

    def _interval_of(self, now: float) -> int:
        return math.floor(now / self.settings.privacy.release_seconds)

    def __len__(self) -> int:
        return len(self._shoppers)

    def add(self, event: BehaviourEvent) -> None:
        touches = self._shoppers.get(event.shopper_id)
        if touches is None:
            if len(self._shoppers) >= self.settings.max_shoppers:
                self.refused_shoppers += 1
                return
            touches = self._shoppers[event.shopper_id] = {}
        bucket = self.item_bucket(event.item_id)
        if bucket in touches or len(touches) >= self.settings.max_items_per_shopper:
            return
        attributes = event.attributes.model_dump() if event.attributes else {}
        touches[bucket] = tuple(self.space.item_values(attributes))

    @property
    def due(self) -> bool:
        """The interval has ended: close the window before reading on."""
        return self._interval_of(self.clock()) != self._interval

    def close(self) -> ClosedWindow:
        """The window's exact counts (never published as they are); a new window opens at the current interval."""
        seconds = self.settings.privacy.release_seconds
        closed = ClosedWindow(start=datetime.fromtimestamp(self._interval * seconds, UTC),
                              end=datetime.fromtimestamp((self._interval + 1) * seconds, UTC),
                              shoppers=len(self._shoppers),
                              counts=interest_counts((list(t.items()) for t in self._shoppers.values()), self.space))
        self._shoppers, self.refused_shoppers = {}, 0
        self._interval = self._interval_of(self.clock())
        return closed


def release(window: ClosedWindow, settings: StatisticsSettings, space: CountSpace,
            rng: np.random.Generator) -> InterestCounts:
    """The window's counts with Gaussian noise on every coordinate, ready to ride on an update."""
    noise_std = settings.privacy.noise_multiplier() * SENSITIVITY
    noisy = window.counts + rng.normal(0.0, noise_std, size=window.counts.shape)
    return InterestCounts(
        release_id=uuid.uuid4().hex, window_start=window.start, window_end=window.end,
        id_buckets=space.id_buckets, value_buckets=space.value_buckets, noise_std=noise_std,
        epsilon_per_period=settings.privacy.epsilon, delta=settings.privacy.delta,
        period_seconds=settings.privacy.period_seconds, releases_per_period=settings.privacy.steps_per_period,
        codec=CODEC, payload=encode_counts(noisy))


def stated_budget(counts: InterestCounts) -> ReleasePrivacy:
    """The budget a release says it was paid from (the receiver cannot see more than this)."""
    try:
        return ReleasePrivacy(epsilon=counts.epsilon_per_period, delta=counts.delta,
                              period_seconds=counts.period_seconds, steps_per_period=counts.releases_per_period)
    except ValidationError as error:
        raise PoisonMessageError("bad_budget", str(error)[:200]) from error


def check_release(counts: InterestCounts, id_buckets: int) -> np.ndarray:
    """The release's counts, once every claim the receiver can check holds: its coordinates are the model's,
    its noise is at least what its stated budget needs, its window is no longer than one release interval,
    and its payload decodes (bounded) to exactly that many finite counts."""
    if counts.id_buckets != id_buckets:
        raise PoisonMessageError("wrong_shape", f"{counts.id_buckets} id buckets; the model has {id_buckets}")
    budget = stated_budget(counts)
    needed = budget.noise_multiplier() * SENSITIVITY
    if counts.noise_std < needed * (1 - 1e-6):
        raise PoisonMessageError("noise_below_budget",
                                 f"noise {counts.noise_std:.4g} < {needed:.4g} that epsilon {budget.epsilon} needs")
    interval = budget.release_seconds
    if (counts.window_end - counts.window_start).total_seconds() > interval * 1.01:
        raise PoisonMessageError("window_too_long", f"window longer than the {interval:.0f} s release interval")
    return decode_counts(counts.payload, counts.id_buckets + counts.value_buckets)
