"""Topic layout and idempotent topic creation.

Every topic is created explicitly before use: brokers that auto-create (Tansu does, with 4 partitions)
would otherwise pick partition counts and configs for us.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pydantic import BaseModel, Field

from facet.config import TopicSettings
from facet.logging import get_logger

log = get_logger(__name__)


class TopicSpec(BaseModel):
    name: str
    partitions: int = Field(ge=1)
    replication_factor: int = Field(ge=1)
    configs: dict[str, str] = Field(default_factory=dict)


def event_topic_specs(topics: TopicSettings, regions: Iterable[str]) -> list[TopicSpec]:
    return [
        TopicSpec(
            name=topics.events_topic(region),
            partitions=topics.events_partitions,
            replication_factor=topics.replication_factor,
            configs={"retention.ms": str(topics.events_retention_ms), "cleanup.policy": "delete"},
        )
        for region in regions
    ]


def federation_topic_specs(topics: TopicSettings, max_message_bytes: int,
                           zones: Sequence[str] = ()) -> list[TopicSpec]:
    """The federation topics, and one inbox per zone of a hierarchical deployment (configured as the
    updates topic is)."""
    inboxes = [TopicSpec(name=topics.zone_updates_topic(zone), partitions=topics.updates_partitions,
                         replication_factor=topics.replication_factor,
                         configs={"retention.ms": str(topics.updates_retention_ms),
                                  "max.message.bytes": str(max_message_bytes), "cleanup.policy": "delete"})
               for zone in zones]
    return [
        *inboxes,
        TopicSpec(
            name=topics.updates,
            partitions=topics.updates_partitions,
            replication_factor=topics.replication_factor,
            configs={
                "retention.ms": str(topics.updates_retention_ms),
                "max.message.bytes": str(max_message_bytes),
                "cleanup.policy": "delete",
            },
        ),
        TopicSpec(
            # Compacted: the newest broadcast per model name is all a late joiner needs.
            name=topics.models,
            partitions=1,
            replication_factor=topics.replication_factor,
            configs={
                "cleanup.policy": "compact",
                "max.message.bytes": str(max_message_bytes),
                "min.compaction.lag.ms": "60000",
            },
        ),
        TopicSpec(
            name=topics.statistics,
            partitions=1,
            replication_factor=topics.replication_factor,
            configs={
                "retention.ms": str(topics.statistics_retention_ms),
                "max.message.bytes": str(max_message_bytes),
                "cleanup.policy": "delete",
            },
        ),
        TopicSpec(
            name=topics.dead_letter,
            partitions=1,
            replication_factor=topics.replication_factor,
            configs={
                "retention.ms": str(topics.dead_letter_retention_ms),
                "max.message.bytes": str(max_message_bytes),
            },
        ),
    ]


async def ensure_topics(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Safe to run concurrently."""
    existing = set(await admin.list_topics())
    missing = [spec for spec in specs if spec.name not in existing]
    if not missing:
        return []
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs) for s in missing]
    )
    created = []
    for name, code, message in _topic_errors(response):
        if code == 0:
            created.append(name)
        elif code == TopicAlreadyExistsError.errno:
            continue
        else:
            raise RuntimeError(f"could not create topic {name}: error {code} {message}")
    log.info("topics_created", topics=created)
    return created


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    rows = []
    for entry in response.topic_errors:  # type: ignore[attr-defined]
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        rows.append((name, code, message))
    return rows
