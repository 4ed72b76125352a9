"""Writes accepted events to their region's topic, keyed by shopper id, and waits for the acks.

Backpressure: at most ``max_in_flight`` events may wait for acks; beyond that the caller is told to come
back later (429). When Kafka does not acknowledge in time the caller gets 503: an event is either
acknowledged by the broker or reported as not accepted, never dropped in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from facet import wire
from facet.config import TopicSettings
from facet.contracts import BehaviourEvent
from facet.errors import RetriableError
from facet_ingest import metrics as m


class Overloaded(RetriableError):
    """Too many events are waiting for Kafka: retry later."""


class BrokerUnreachable(RetriableError):
    """Kafka did not acknowledge the batch in time: nothing of it is reported as accepted."""


class EventPublisher:
    def __init__(self, producer: AIOKafkaProducer, topics: TopicSettings, max_in_flight: int,
                 timeout_s: float) -> None:
        self.producer = producer
        self.topics = topics
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.in_flight = 0
        self.connected = False

    async def publish(self, events: Sequence[BehaviourEvent]) -> None:
        if self.in_flight + len(events) > self.max_in_flight:
            raise Overloaded(f"{self.in_flight} events are waiting for Kafka")
        self.in_flight += len(events)
        m.IN_FLIGHT.set(self.in_flight)
        headers = wire.schema_headers(BehaviourEvent)
        try:
            futures = [
                await self.producer.send(self.topics.events_topic(e.region), wire.encode(e),
                                         key=e.shopper_id.encode(), headers=headers)
                for e in events
            ]
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s)
        except (TimeoutError, KafkaError) as error:
            self.connected = False
            raise BrokerUnreachable(f"Kafka did not acknowledge the batch: {error!r}") from error
        finally:
            self.in_flight -= len(events)
            m.IN_FLIGHT.set(self.in_flight)
        self.connected = True
        for event in events:
            m.EVENTS_ACCEPTED.labels(event.region).inc()
