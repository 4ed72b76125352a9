"""Who signs updates: regional trainers, and the zone tiers that forward their regions' averaged steps.
(A name is only a claim; the aggregator binds each name to its own key and region.)"""

from __future__ import annotations

ZONE_PREFIX = "zone-"


def zone_trainer_id(zone: str) -> str:
    """The id a zone signs its forwarded updates with (the global aggregator binds it to the zone)."""
    return f"{ZONE_PREFIX}{zone}"


def is_zone(trainer_id: str) -> bool:
    return trainer_id.startswith(ZONE_PREFIX)
