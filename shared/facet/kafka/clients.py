"""Factories for aiokafka clients built from settings, so every client gets the same security options."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from facet.config import KafkaSettings


def make_producer(settings: KafkaSettings, servers: str, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        **settings.client_options(),
        "bootstrap_servers": servers,
        "acks": "all",
        "enable_idempotence": settings.enable_idempotence,
        "max_request_size": settings.max_message_bytes,
        "linger_ms": 5,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    settings: KafkaSettings,
    servers: str,
    topics: Iterable[str] = (),
    *,
    group_id: str | None,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A consumer with manual commits: offsets move only after the work they cover is durable."""
    options: dict[str, Any] = {
        **settings.client_options(),
        "bootstrap_servers": servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "max_partition_fetch_bytes": settings.max_message_bytes,
        "fetch_max_bytes": max(settings.max_message_bytes, 52_428_800),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def make_admin(settings: KafkaSettings, servers: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=servers, **settings.client_options())


async def assign_whole_topic(consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event) -> bool:
    """Assign every partition of ``topic`` from its beginning, without a group (each reader needs it all).

    Waits for the topic's metadata; False when ``stop`` is set first. Reading from the beginning is
    deliberate: ``seek_to_end`` and ``auto_offset_reset="latest"`` are wrong on the embedded broker.
    """
    partitions = consumer.partitions_for_topic(topic)
    while partitions is None:
        if stop.is_set():
            return False
        await asyncio.sleep(0.5)
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    await consumer.seek_to_beginning()
    return True
