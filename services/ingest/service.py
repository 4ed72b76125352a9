"""``facet ingest``: run the gateway with its Kafka producer; drain in-flight sends on SIGTERM."""

from __future__ import annotations

import asyncio

from facet.config import KafkaSettings, TopicSettings
from facet.kafka.clients import make_producer
from facet.kafka.shutdown import ShutdownSignal
from facet.logging import get_logger
from facet.service.health import Health
from facet.service.http import serve
from facet.service.supervision import TaskSupervisor
from facet_ingest.app import create_app
from facet_ingest.publisher import EventPublisher
from facet_ingest.settings import IngestSettings

log = get_logger(__name__)


async def run_ingest(settings: IngestSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    shutdown = ShutdownSignal()
    shutdown.install()
    producer = make_producer(kafka, kafka.events_servers(), linger_ms=10, max_batch_size=256 * 1024)
    publisher = EventPublisher(producer, topics, settings.max_in_flight_events, settings.send_timeout_s)
    health = Health(stall_after_s=3600)
    health.set("producer_connected", False)
    app = create_app(settings, publisher, health)
    stop = asyncio.Event()
    await producer.start()
    publisher.connected = True
    health.set("producer_connected", True)
    supervisor = TaskSupervisor(health, shutdown)
    supervisor.start("http", serve(app, settings.http_host, settings.http_port, stop,
                                   limit_concurrency=settings.http_limit_concurrency))

    async def watch() -> None:
        while not shutdown.requested:
            health.tick()
            health.set("producer_connected", publisher.connected or await _broker_answers(producer))
            await shutdown.wait(1.0)

    supervisor.start("broker_watch", watch())
    await shutdown.wait()
    stop.set()  # stop accepting requests; uvicorn finishes the ones in flight
    try:
        await supervisor.wait()
    finally:
        await producer.stop()  # flushes whatever is still buffered
        log.info("ingest_stopped")


async def _broker_answers(producer: object) -> bool:
    client = getattr(producer, "client", None)
    try:
        return bool(client is not None and await client.fetch_all_metadata())
    except Exception:
        return False
