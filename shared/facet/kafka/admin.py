"""Topic provisioning against a running cluster, shared by the CLI, the main job and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic_settings import BaseSettings, SettingsConfigDict

from facet.config import DEFAULT_REGIONS, KafkaSettings, RegionSettings, TopicSettings, ZoneMap
from facet.kafka.clients import make_admin
from facet.kafka.topics import ensure_topics, event_topic_specs, federation_topic_specs


async def create_all_topics(
    kafka: KafkaSettings, topics: TopicSettings, regions: Sequence[str], zones: Sequence[str] = ()
) -> list[str]:
    """Create the regional event topics and the federation topics (each on its own cluster)."""
    created: list[str] = []
    admin = make_admin(kafka, kafka.events_servers())
    await admin.start()
    try:
        created += await ensure_topics(admin, event_topic_specs(topics, regions))
        if kafka.federation_servers() == kafka.events_servers():
            created += await ensure_topics(admin, federation_topic_specs(topics, kafka.max_message_bytes, zones))
            return created
    finally:
        await admin.close()
    admin = make_admin(kafka, kafka.federation_servers())
    await admin.start()
    try:
        created += await ensure_topics(admin, federation_topic_specs(topics, kafka.max_message_bytes, zones))
    finally:
        await admin.close()
    return created


class TopicSetup(BaseSettings):
    """What ``facet-create-topics`` creates: every topic for these regions (FACET_REGIONS, a JSON list)."""

    model_config = SettingsConfigDict(env_prefix="FACET_")

    regions: tuple[str, ...] = DEFAULT_REGIONS
    #: A hierarchical deployment's zones (FACET_ZONES, e.g. ``apac:jp,in,ae;emea:eu,uk``): one inbox each.
    zones: str = ""


def provision_topics(regions: Sequence[str], zones: str = "") -> str:
    """Create every topic for these (validated) regions and zones on the configured clusters; what was
    created."""
    codes = RegionSettings(regions=tuple(regions)).regions
    zone_names = list(ZoneMap.parse(zones).zones)
    created = asyncio.run(create_all_topics(KafkaSettings(), TopicSettings(), codes, zone_names))
    return f"created {len(created)} topic(s): {', '.join(created) or 'none (all existed)'}"


def main() -> None:
    """``facet-create-topics``: create every Facet topic with its configs (idempotent), for ops jobs that
    run a service image (compose's ``topics`` job); the lab's ``facet topics create`` does the same."""
    setup = TopicSetup()
    print(provision_topics(setup.regions, setup.zones))


if __name__ == "__main__":  # pragma: no cover
    main()
