"""Topic provisioning against a running cluster, shared by the CLI, the main job and the tests."""

from __future__ import annotations

from collections.abc import Sequence

from facet.config import KafkaSettings, TopicSettings
from facet.kafka.clients import make_admin
from facet.kafka.topics import ensure_topics, event_topic_specs, federation_topic_specs


async def create_all_topics(
    kafka: KafkaSettings, topics: TopicSettings, regions: Sequence[str]
) -> list[str]:
    """Create the regional event topics and the federation topics (each on its own cluster)."""
    created: list[str] = []
    admin = make_admin(kafka, kafka.events_servers())
    await admin.start()
    try:
        created += await ensure_topics(admin, event_topic_specs(topics, regions))
        if kafka.federation_servers() == kafka.events_servers():
            created += await ensure_topics(admin, federation_topic_specs(topics, kafka.max_message_bytes))
            return created
    finally:
        await admin.close()
    admin = make_admin(kafka, kafka.federation_servers())
    await admin.start()
    try:
        created += await ensure_topics(admin, federation_topic_specs(topics, kafka.max_message_bytes))
    finally:
        await admin.close()
    return created
