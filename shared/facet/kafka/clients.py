"""Factories for aiokafka clients built from settings, so every client gets the same security options."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
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
