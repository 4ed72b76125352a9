"""``facet insights-service``: follow the global models, derive the insights of each new version off the
event loop, and serve them (API and page). It reads no events topic: no raw behaviour reaches it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import torch
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import GlobalModel
from facet.insights.products import read_feed
from facet.insights.report import ReportOptions
from facet.kafka.clients import make_producer
from facet.kafka.dlq import DeadLetterPublisher
from facet.kafka.shutdown import ShutdownSignal
from facet.logging import get_logger
from facet.service.announcements import CatalogueFull
from facet.service.health import Health
from facet.service.http import serve
from facet.service.model_feed import ModelGate, follow_models
from facet.service.supervision import TaskSupervisor
from facet_insights.app import create_app
from facet_insights.metrics import ITEMS_REFUSED
from facet_insights.settings import InsightsSettings
from facet_insights.state import InsightsState
from facet_insights.statistics_feed import follow_statistics

log = get_logger(__name__)


def load_feed(state: InsightsState, path: Path) -> int:
    """Add every valid product of a JSON-lines feed; a bad line is counted and skipped, never fatal."""
    added = 0
    with path.open("rb") as handle:
        for record in read_feed(handle):
            if isinstance(record, str):
                ITEMS_REFUSED.labels(record).inc()
                continue
            try:
                state.add_product(record)
                added += 1
            except CatalogueFull:
                ITEMS_REFUSED.labels("catalogue_full").inc()
                log.warning("catalogue_full", path=str(path), max_items=state.max_items)
                break
    return added


async def run_insights(settings: InsightsSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    torch.set_num_threads(1)
    shutdown = ShutdownSignal()
    shutdown.install()
    state = InsightsState(settings.model, settings.report_regions(), max_items=settings.max_items,
                          recent_versions=settings.recent_versions, options=ReportOptions(top_k=settings.top_k),
                          value_buckets=settings.statistics_value_buckets,
                          statistics_window_days=settings.statistics_window_days)
    if settings.catalogue_file is not None:
        added = await asyncio.to_thread(load_feed, state, settings.catalogue_file)
        log.info("catalogue_loaded", path=str(settings.catalogue_file), items=added)
    health = Health()
    health.set("model_loaded", False)
    gate = ModelGate.for_model(settings.model_name, settings.model_trust, settings.model)

    async def on_model(parameters: dict[str, torch.Tensor], model: GlobalModel) -> None:
        await asyncio.to_thread(state.load_model, parameters, model.version, model.epoch)
        health.set("model_loaded", True)
        log.info("insights_built", epoch=model.epoch, version=model.version, items=len(state.products))

    producer = make_producer(kafka, kafka.federation_servers())
    await producer.start()
    dlq = DeadLetterPublisher(producer, topics.dead_letter, "insights")
    stop = asyncio.Event()
    supervisor = TaskSupervisor(health, shutdown)
    supervisor.start("models", follow_models(kafka, topics.models, gate, on_model, stop, dlq, health))
    supervisor.start("statistics", follow_statistics(kafka, topics.statistics, settings.model_trust.verifier(),
                                                     state, stop, dlq))
    supervisor.start("http", serve(create_app(settings, state, health), settings.http_host, settings.http_port,
                                   stop, limit_concurrency=settings.http_limit_concurrency))
    try:
        await shutdown.wait()
        stop.set()
        await supervisor.wait()
    finally:
        await producer.stop()
        log.info("insights_stopped")
