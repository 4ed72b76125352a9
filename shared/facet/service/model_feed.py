"""Follow ``facet.models.v1``: every process that needs the global model reads the topic from the start
(never ``seek_to_end``, which is wrong on the embedded broker) and acts on each newer version."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import torch

from facet import wire
from facet.config import KafkaSettings
from facet.contracts import GlobalModel
from facet.errors import FacetError
from facet.kafka.clients import assign_whole_topic, make_consumer
from facet.logging import get_logger
from facet.service.models import fetch_parameters

log = get_logger(__name__)

OnModel = Callable[[dict[str, torch.Tensor], GlobalModel], Awaitable[None]]


async def follow_models(
    kafka: KafkaSettings, topic: str, model_name: str, on_model: OnModel, stop: asyncio.Event
) -> None:
    consumer = make_consumer(kafka, kafka.federation_servers(), group_id=None)
    await consumer.start()
    try:
        if not await assign_whole_topic(consumer, topic, stop):
            return
        current = -1
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            newest: GlobalModel | None = None
            for records in batches.values():
                for record in records:
                    if record.key is not None and record.key != model_name.encode():
                        continue
                    try:
                        message = wire.decode(record.value, GlobalModel)
                    except FacetError as error:
                        log.warning("model_message_rejected", reason=getattr(error, "reason", "invalid"))
                        continue
                    if message.version > current and (newest is None or message.version > newest.version):
                        newest = message
            if newest is None:
                continue
            try:
                parameters = await asyncio.to_thread(fetch_parameters, newest)
            except FacetError as error:
                log.warning("model_fetch_failed", version=newest.version, error=str(error))
                continue
            current = newest.version
            await on_model(parameters, newest)
    finally:
        await consumer.stop()
