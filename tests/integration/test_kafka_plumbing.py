"""The Kafka plumbing against a real Kafka-protocol broker (embedded Tansu unless configured)."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import BehaviourEvent, GlobalModel
from facet.errors import PoisonMessageError
from facet.federation.updates import signed_update
from facet.kafka.admin import create_all_topics
from facet.kafka.clients import make_consumer, make_producer
from facet.kafka.dlq import REASON_HEADER, DeadLetterPublisher

pytestmark = pytest.mark.integration


def _event(i: int, shopper: str = "s") -> BehaviourEvent:
    return BehaviourEvent(
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        region="eu",
        storefront="store-de",
        shopper_id=f"{shopper}{i % 17}",
        session_id=f"sess{i}",
        item_id=f"ring-{i}",
        event_type="view",
    )


async def _drain(consumer: AIOKafkaConsumer, expected: int, timeout_s: float = 30.0) -> list[bytes]:
    values: list[bytes] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(values) < expected and asyncio.get_running_loop().time() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            values.extend(r.value for r in records if r.value is not None)
    return values


async def test_every_message_type_round_trips_including_8mb(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["eu"])
    big = os.urandom(8 * 1024 * 1024 + 17)
    messages = [
        (topic_settings.events_topic("eu"), _event(1)),
        (
            topic_settings.updates,
            signed_update(b"k", trainer_id="t-eu", region="eu", base_version=0, num_samples=5, codec="fp32",
                          payload=b"\x01\x02"),
        ),
        (topic_settings.models, GlobalModel(model_name="facet", version=1, parameters=big)),
    ]
    producer = make_producer(kafka_settings, kafka_settings.events_servers())
    await producer.start()
    try:
        for topic, message in messages:
            await producer.send_and_wait(
                topic, wire.encode(message), key=b"k", headers=wire.schema_headers(type(message))
            )
    finally:
        await producer.stop()

    for topic, message in messages:
        consumer = make_consumer(kafka_settings, kafka_settings.events_servers(), [topic], group_id=None)
        await consumer.start()
        try:
            (value,) = await _drain(consumer, 1)
        finally:
            await consumer.stop()
        assert wire.decode(value, type(message)) == message


async def test_rebalance_between_two_consumers_loses_nothing(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["eu"])
    topic = topic_settings.events_topic("eu")
    group = f"g-{uuid.uuid4().hex[:6]}"
    total = 400
    producer = make_producer(kafka_settings, kafka_settings.events_servers())
    await producer.start()

    async def produce(start: int, stop: int) -> None:
        for i in range(start, stop):
            event = _event(i)
            await producer.send(topic, wire.encode(event), key=event.shopper_id.encode())
        await producer.flush()

    seen: dict[str, int] = {}

    async def consume(consumer: AIOKafkaConsumer, until: asyncio.Event) -> None:
        while not until.is_set():
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    item = wire.decode(record.value, BehaviourEvent).item_id
                    seen[item] = seen.get(item, 0) + 1
            if batches:
                await consumer.commit()

    first = make_consumer(kafka_settings, kafka_settings.events_servers(), [topic], group_id=group)
    second = make_consumer(kafka_settings, kafka_settings.events_servers(), [topic], group_id=group)
    done = asyncio.Event()
    try:
        await first.start()
        task_first = asyncio.create_task(consume(first, done))
        await produce(0, total // 2)
        await asyncio.sleep(1)
        await second.start()  # joins the group: partitions move while messages keep arriving
        task_second = asyncio.create_task(consume(second, done))
        await produce(total // 2, total)
        for _ in range(120):
            if len(seen) == total and second.assignment():
                break
            await asyncio.sleep(0.25)
        done.set()
        await asyncio.gather(task_first, task_second)
    finally:
        await producer.stop()
        await first.stop()
        await second.stop()
    assert len(seen) == total, f"lost {total - len(seen)} events across the rebalance"
    assert first.assignment() is not None


async def test_malformed_payload_is_rejected_and_dead_lettered(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["eu"])
    topic = topic_settings.events_topic("eu")
    producer = make_producer(kafka_settings, kafka_settings.events_servers())
    await producer.start()
    consumer = make_consumer(kafka_settings, kafka_settings.events_servers(), [topic], group_id=None)
    dlq_consumer = make_consumer(
        kafka_settings, kafka_settings.events_servers(), [topic_settings.dead_letter], group_id=None
    )
    try:
        await producer.send_and_wait(topic, b"\x93not msgpack at all", key=b"s1")
        await consumer.start()
        (value,) = await _drain(consumer, 1)
        with pytest.raises(PoisonMessageError) as caught:
            wire.decode(value, BehaviourEvent)
        await DeadLetterPublisher(producer, topic_settings.dead_letter, "test").publish(
            caught.value, value=value, source_topic=topic, partition=0, offset=0
        )
        await dlq_consumer.start()
        records = []
        for _ in range(60):
            batches = await dlq_consumer.getmany(timeout_ms=500)
            records += [r for rs in batches.values() for r in rs]
            if records:
                break
    finally:
        await producer.stop()
        await consumer.stop()
        await dlq_consumer.stop()
    (record,) = records
    assert record.value == value
    assert dict(record.headers)[REASON_HEADER] == b"malformed"
