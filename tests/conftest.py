"""Shared fixtures. Integration tests get one real Kafka-protocol broker per session.

The broker comes from the same provisioner as the main job: KAFKA_BOOTSTRAP_SERVERS, else Docker when
FACET_BROKER=docker, else the embedded Tansu broker (always stopped at the end of the session).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from facet.config import KafkaSettings, TopicSettings
from facet.kafka.broker import BrokerHandle, provision_broker

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    with provision_broker(log_path=log_path) as handle:
        yield handle


@pytest.fixture
def kafka_settings(broker: BrokerHandle) -> KafkaSettings:
    # Short session timeouts: a group's first join on the embedded broker takes half of it.
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        enable_idempotence=broker.supports_idempotence,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )


@pytest.fixture
def topic_settings() -> TopicSettings:
    """Topic names unique to one test, so tests sharing the session broker never see each other."""
    suffix = uuid.uuid4().hex[:8]
    return TopicSettings(
        events_pattern=f"t{suffix}.events.{{region}}.v1",
        updates=f"t{suffix}.updates.v1",
        models=f"t{suffix}.models.v1",
        statistics=f"t{suffix}.statistics.v1",
        dead_letter=f"t{suffix}.dlq.v1",
        events_partitions=2,
    )


def require_data_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"real dataset {path} is absent")
    return path
