"""Product announcements (``POST /v1/items``), the same in every service that takes them (recommender,
insights): a catalogue writer's key, a per-client rate limit, and a bounded catalogue."""

from __future__ import annotations

from fastapi import HTTPException
from limits import parse as parse_rate
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from facet.service.auth import ApiClient


class CatalogueFull(Exception):
    """A new item would pass the service's ``max_items`` (re-announcing a known one is fine)."""


class AnnouncementGate:
    """At most ``per_minute`` announcements per client in any moving minute; refusals are counted in
    ``refused`` (a counter labelled by reason)."""

    def __init__(self, per_minute: float, refused: Counter) -> None:
        self.per_minute = per_minute
        self.refused = refused
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._rate = parse_rate(f"{per_minute:g}/minute")

    def admit(self, client: ApiClient) -> None:
        """Raises 429 (with Retry-After) when the client is over its rate."""
        if not self._limiter.hit(self._rate, client.name):
            self.refused.labels("rate_limited").inc()
            raise HTTPException(429, f"at most {self.per_minute:g} announcements a minute",
                                headers={"Retry-After": "60"})

    def full(self, error: CatalogueFull) -> HTTPException:
        """The 409 for a full catalogue, counted."""
        self.refused.labels("catalogue_full").inc()
        return HTTPException(409, str(error))
