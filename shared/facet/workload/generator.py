"""A realistic cross-border jewelry workload: sessions of view/search/cart/purchase across regions.

What makes it realistic enough to learn from (and to federate):
- non-IID regions: one large region and several small ones whose metals, gems, categories and price
  bands differ (see :mod:`facet.workload.catalogue`);
- shoppers with their own taste inside their region's, some returning, many new;
- sequence structure: the next item is often a close variant of the last one or a matching piece
  (same metal and gem, another category), so order carries signal;
- new items arrive over time with a launch boost, and new shoppers keep arriving.

Deterministic under a seed: the same config yields the same events, byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from facet.contracts import BehaviourEvent, EventType
from facet.workload.catalogue import (
    CATEGORIES,
    METALS,
    Catalogue,
    RegionProfile,
    default_regions,
    region_affinity,
)


class WorkloadConfig(BaseModel):
    seed: int = 7
    sessions: int = Field(default=20_000, ge=1)
    initial_items: int = Field(default=1_500, ge=10)
    #: Items launched per 1,000 sessions after the start.
    new_items_per_1k_sessions: float = Field(default=12.0, ge=0)
    #: Probability that a session belongs to a shopper never seen before.
    new_shopper_share: float = Field(default=0.35, ge=0, le=1)
    mean_session_items: float = Field(default=4.5, ge=1)
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    #: Simulated seconds between session starts (whole-system rate; regions share it by traffic).
    seconds_between_sessions: float = Field(default=30.0, gt=0)
    #: Restrict to these regions (None: all default regions).
    regions: tuple[str, ...] | None = None


@dataclass
class _Shopper:
    shopper_id: str
    region: int
    favourite_category: int
    favourite_metal: int
    device: str
    activity: float


@dataclass
class _RegionState:
    profile: RegionProfile
    shoppers: list[_Shopper] = field(default_factory=list)
    affinity: np.ndarray | None = None
    affinity_items: int = 0
    #: Running sums of the shoppers' activity (room doubles as they arrive), so a returning shopper is drawn
    #: in O(log n): rebuilding the weights on every session made 330k sessions take hours.
    activity_sums: np.ndarray = field(default_factory=lambda: np.zeros(256))

    def add_shopper(self, shopper: _Shopper) -> None:
        count = len(self.shoppers)
        if count == len(self.activity_sums):
            self.activity_sums = np.concatenate([self.activity_sums, np.zeros(count)])
        self.activity_sums[count] = (self.activity_sums[count - 1] if count else 0.0) + shopper.activity
        self.shoppers.append(shopper)

    def returning_shopper(self, uniform: float) -> _Shopper:
        """The shopper whose share of the activity holds ``uniform`` (in [0, 1)): drawn in proportion to
        activity, with the one uniform draw ``Generator.choice(p=...)`` takes."""
        sums = self.activity_sums[: len(self.shoppers)]
        return self.shoppers[int(np.searchsorted(sums, uniform * sums[-1], side="right"))]


class JewelryWorkload:
    def __init__(self, config: WorkloadConfig | None = None) -> None:
        self.config = config or WorkloadConfig()
        self._rng = np.random.default_rng(self.config.seed)
        profiles = default_regions()
        if self.config.regions is not None:
            wanted = set(self.config.regions)
            profiles = tuple(p for p in profiles if p.code in wanted)
            if not profiles:
                raise ValueError(f"no known region among {self.config.regions}")
        shares = np.array([p.traffic_share for p in profiles])
        self._region_share = shares / shares.sum()
        self._regions = [_RegionState(p) for p in profiles]
        self.catalogue = Catalogue()
        self.catalogue.add_items(self._rng, self.config.initial_items, released_at=0.0)
        self._event_counter = 0

    @property
    def regions(self) -> list[str]:
        return [r.profile.code for r in self._regions]

    def events(self) -> Iterator[BehaviourEvent]:
        config = self.config
        launch_every = 1000.0 / config.new_items_per_1k_sessions if config.new_items_per_1k_sessions else 0
        next_launch = launch_every
        for session_index in range(config.sessions):
            now = session_index * config.seconds_between_sessions
            if launch_every and session_index >= next_launch:
                self.catalogue.add_items(self._rng, 1, released_at=now)
                next_launch += launch_every
            region_index = int(self._rng.choice(len(self._regions), p=self._region_share))
            yield from self._session(region_index, session_index, now)

    # -- one session ---------------------------------------------------------------------------------

    def _session(self, region_index: int, session_index: int, now: float) -> Iterator[BehaviourEvent]:
        rng = self._rng
        state = self._regions[region_index]
        shopper = self._pick_shopper(state, region_index)
        session_id = _short_hash(f"{self.config.seed}/session/{session_index}")
        base_scores = self._base_scores(state, shopper, now)
        length = int(min(30, 1 + rng.geometric(1.0 / self.config.mean_session_items)))
        clock = now
        last: int | None = None
        for _ in range(length):
            if last is None or rng.random() < 0.25:
                if rng.random() < 0.3:
                    yield self._event(state, shopper, session_id, clock, None, EventType.SEARCH)
                    clock += float(rng.exponential(8.0))
                item = self._sample(base_scores)
            else:
                item = self._sample(base_scores + self._transition_bonus(last))
            yield self._event(state, shopper, session_id, clock, item, EventType.VIEW)
            clock += float(rng.exponential(20.0))
            if rng.random() < 0.14:
                yield self._event(state, shopper, session_id, clock, item, EventType.CART)
                clock += float(rng.exponential(15.0))
                if rng.random() < 0.45:
                    yield self._event(state, shopper, session_id, clock, item, EventType.PURCHASE)
                    clock += float(rng.exponential(30.0))
            last = item

    def _pick_shopper(self, state: _RegionState, region_index: int) -> _Shopper:
        rng = self._rng
        if not state.shoppers or rng.random() < self.config.new_shopper_share:
            profile = state.profile
            metal_weights = np.array([profile.metal_taste.get(m, 1.0) for m in METALS]) ** 1.5
            category_weights = np.array([profile.category_taste.get(c, 1.0) for c in CATEGORIES]) ** 1.5
            shopper = _Shopper(
                shopper_id=_short_hash(f"{self.config.seed}/{profile.code}/shopper/{len(state.shoppers)}"),
                region=region_index,
                favourite_category=int(rng.choice(len(CATEGORIES), p=category_weights / category_weights.sum())),
                favourite_metal=int(rng.choice(len(METALS), p=metal_weights / metal_weights.sum())),
                device="mobile" if rng.random() < profile.mobile_share else "desktop",
                activity=float(rng.pareto(1.2) + 0.2),
            )
            state.add_shopper(shopper)
            return shopper
        return state.returning_shopper(float(rng.random()))

    def _base_scores(self, state: _RegionState, shopper: _Shopper, now: float) -> np.ndarray:
        catalogue = self.catalogue
        count = len(catalogue)
        if state.affinity is None or state.affinity_items != count:
            state.affinity = region_affinity(catalogue, state.profile, count)
            state.affinity_items = count
        category = catalogue.array("category")
        metal = catalogue.array("metal")
        released_at = catalogue.array("released_at")
        age_days = (now - released_at) / 86_400.0
        launch_boost = np.where(released_at > 0, 1.5 * np.exp(-age_days / 3.0), 0.0)
        return (
            state.affinity
            + np.log(catalogue.array("base_popularity"))
            + 1.2 * (category == shopper.favourite_category)
            + 1.0 * (metal == shopper.favourite_metal)
            + launch_boost
        )

    def _transition_bonus(self, last: int) -> np.ndarray:
        """The next item resembles the last: a variant (same category and metal) or a matching piece."""
        catalogue = self.catalogue
        category = catalogue.array("category")
        metal = catalogue.array("metal")
        gem = catalogue.array("gem")
        same_metal = metal == catalogue.metal[last]
        same_gem = gem == catalogue.gem[last]
        same_category = category == catalogue.category[last]
        bonus = 2.5 * (same_category & same_metal) + 3.0 * (same_metal & same_gem & ~same_category)
        bonus = bonus + 1.0 * same_gem
        bonus[last] = -10.0  # views rarely repeat the item just seen
        return bonus

    def _sample(self, scores: np.ndarray) -> int:
        cumulative = np.cumsum(np.exp(scores - scores.max()))
        index = int(np.searchsorted(cumulative, self._rng.random() * cumulative[-1], side="right"))
        return min(index, len(cumulative) - 1)

    def _event(
        self,
        state: _RegionState,
        shopper: _Shopper,
        session_id: str,
        clock: float,
        item: int | None,
        event_type: EventType,
    ) -> BehaviourEvent:
        self._event_counter += 1
        profile = state.profile
        catalogue = self.catalogue
        occurred_at = self.config.start + timedelta(seconds=clock)
        if item is None:  # a search: the query names the shopper's favourite kind of piece
            target = self._sample(self._base_scores(state, shopper, clock))
            query = f"{METALS[catalogue.metal[target]]} {CATEGORIES[catalogue.category[target]]}"
            item = target
        else:
            query = None
        return BehaviourEvent(
            event_id=_short_hash(f"{self.config.seed}/event/{self._event_counter}"),
            occurred_at=occurred_at,
            region=profile.code,
            storefront=f"{profile.code}-{'app' if shopper.device == 'mobile' else 'web'}",
            shopper_id=shopper.shopper_id,
            session_id=session_id,
            item_id=catalogue.item_ids[item],
            event_type=event_type,
            price=round(catalogue.price_usd[item] * profile.usd_rate, 2),
            currency=profile.currency,
            device=shopper.device,
            query=query,
            attributes=catalogue.attributes(item),
        )


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
