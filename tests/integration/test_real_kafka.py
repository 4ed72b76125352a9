"""Semantics only real Apache Kafka provides: idempotent producers and topic size limits.

Run with a real cluster (KAFKA_BOOTSTRAP_SERVERS) or FACET_BROKER=docker where a Docker engine is
reachable; on the embedded broker these skip, because Tansu stores but does not apply these configs.
"""

from __future__ import annotations

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from facet.config import KafkaSettings, TopicSettings
from facet.kafka.admin import create_all_topics
from facet.kafka.broker import BrokerHandle
from facet.kafka.clients import make_producer

pytestmark = [pytest.mark.integration, pytest.mark.real_kafka]


@pytest.fixture
def real_kafka(broker: BrokerHandle) -> BrokerHandle:
    if not broker.real_kafka_semantics:
        pytest.skip(f"{broker.kind} broker: idempotence and max.message.bytes are not enforced "
                    "(set KAFKA_BOOTSTRAP_SERVERS, or FACET_BROKER=docker with a Docker engine)")
    return broker


async def test_idempotent_producer_and_topic_size_limit(
    real_kafka: BrokerHandle, kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["eu"])
    # The client allows 64 MB, so only the broker's limit can refuse the large record below.
    producer = make_producer(kafka_settings.model_copy(update={"enable_idempotence": True}),
                             kafka_settings.events_servers(), max_request_size=64 * 1024 * 1024)
    await producer.start()
    try:
        await producer.send_and_wait(topic_settings.events_topic("eu"), b"x" * 100, key=b"k")
        # Event topics keep the broker's default limit (about 1 MB): a 4 MB event must be refused by Kafka.
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_and_wait(topic_settings.events_topic("eu"), b"x" * (4 * 1024 * 1024), key=b"k")
    finally:
        await producer.stop()
