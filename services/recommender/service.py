"""``facet recommender --region R``: follow region R's events (recent history) and the global models;
serve top-K over HTTP. A new model is loaded off the event loop and swapped in as one reference."""

from __future__ import annotations

import asyncio

import torch
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import BehaviourEvent, GlobalModel
from facet.errors import PoisonMessageError
from facet.kafka.clients import assign_whole_topic, make_consumer, make_producer
from facet.kafka.dlq import DeadLetterPublisher
from facet.kafka.shutdown import ShutdownSignal
from facet.logging import get_logger
from facet.service.health import Health
from facet.service.http import serve
from facet.service.model_feed import ModelGate, follow_models
from facet.service.supervision import TaskSupervisor
from facet_recommender.app import EVENTS_REJECTED, MODEL_VERSION, ONLINE_NDCG, create_app
from facet_recommender.settings import RecommenderSettings
from facet_recommender.state import RegionalState

log = get_logger(__name__)


async def follow_events(kafka: KafkaSettings, topic: str, state: RegionalState, health: Health,
                        stop: asyncio.Event, dlq: DeadLetterPublisher) -> None:
    # Every replica needs every partition of its region, so no consumer group: assign all, from the start.
    consumer = make_consumer(kafka, kafka.events_servers(), group_id=None)
    await consumer.start()
    try:
        if not await assign_whole_topic(consumer, topic, stop):
            return
        health.set("events_assigned", True)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=300, max_records=2000)
            health.tick()
            for records in batches.values():
                for record in records:
                    await _observe(state, record, topic, dlq)
            if state.online_ndcg10 is not None:
                ONLINE_NDCG.labels(state.region).set(state.online_ndcg10)
    finally:
        await consumer.stop()


async def _observe(state: RegionalState, record: object, topic: str, dlq: DeadLetterPublisher) -> None:
    """One record, whatever its bytes: learned from, or counted and dead-lettered; never raises."""
    value = getattr(record, "value", None)
    try:
        event = wire.decode(value, BehaviourEvent)
        if event.region != state.region:
            raise PoisonMessageError("wrong_region", f"{event.region} event on {topic}")
        state.observe(event)
        return
    except PoisonMessageError as poison:
        error = poison
    except Exception as unexpected:  # a bug must not end the follower: keep the record and say why
        error = PoisonMessageError("unexpected", f"{type(unexpected).__name__}: {unexpected}")
        log.exception("event_failed", offset=getattr(record, "offset", None))
    EVENTS_REJECTED.labels(error.reason).inc()
    await dlq.publish_record_quietly(error, record)


async def run_recommender(settings: RecommenderSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    torch.set_num_threads(1)
    shutdown = ShutdownSignal()
    shutdown.install()
    state = RegionalState(settings.model, settings.region, max_shoppers=settings.max_shoppers,
                          max_purchases=settings.max_purchases_per_shopper, max_items=settings.max_items,
                          trend_half_life=settings.trend_half_life_events, cold_start=settings.cold_start)
    health = Health()
    health.set("events_assigned", False)
    health.set("model_loaded", False)
    gate = ModelGate.for_model(settings.model_name, settings.model_trust, settings.model)

    async def on_model(parameters: dict[str, torch.Tensor], model: GlobalModel) -> None:
        await asyncio.to_thread(state.load_model, parameters, model.version)
        health.set("model_loaded", True)
        MODEL_VERSION.labels(settings.region).set(model.version)
        log.info("model_loaded", epoch=model.epoch, version=model.version, region=settings.region)

    producer = make_producer(kafka, kafka.events_servers())
    await producer.start()
    dlq = DeadLetterPublisher(producer, topics.dead_letter, f"recommender-{settings.region}")
    stop = asyncio.Event()
    supervisor = TaskSupervisor(health, shutdown)
    supervisor.start("events", follow_events(kafka, topics.events_topic(settings.region), state, health, stop, dlq))
    supervisor.start("models", follow_models(kafka, topics.models, gate, on_model, stop, dlq))
    supervisor.start("http", serve(create_app(settings, state, health), settings.http_host, settings.http_port,
                                   stop, limit_concurrency=settings.http_limit_concurrency))
    try:
        await shutdown.wait()
        stop.set()
        await supervisor.wait()
    finally:
        await producer.stop()
        log.info("recommender_stopped", region=settings.region)
