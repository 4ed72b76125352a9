"""Follow the statistics topic: each region's noisy interest counts, as the aggregator forwarded and
signed them. Whatever bytes arrive, a record is taken or refused with its reason; reading goes on."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from facet import wire
from facet.config import KafkaSettings
from facet.contracts import RegionalStatistics
from facet.errors import PoisonMessageError
from facet.federation.model_signing import ModelVerifier
from facet.insights.releases import check_release
from facet.kafka.clients import assign_whole_topic, make_consumer
from facet.kafka.dlq import DeadLetterPublisher
from facet.logging import get_logger
from facet_insights.metrics import STATISTICS_ACCEPTED, STATISTICS_REJECTED
from facet_insights.state import InsightsState

log = get_logger(__name__)

#: While a backlog is read (a restart reads the topic's eight days), figures are rebuilt at most this often.
REBUILD_EVERY_SECONDS = 10.0


def admit(value: bytes | None, verifier: ModelVerifier | None,
          id_buckets: int) -> tuple[RegionalStatistics, np.ndarray]:
    """The record as verified statistics and their decoded counts, or :class:`PoisonMessageError`.
    ``verifier`` None: unsigned statistics are accepted (the model trust's explicit development mode)."""
    statistics = wire.decode(value, RegionalStatistics)
    if verifier is not None and not verifier.verify_statistics(statistics):
        raise PoisonMessageError("bad_signature", "statistics not signed by a trusted aggregator key")
    return statistics, check_release(statistics.counts, id_buckets)


async def follow_statistics(kafka: KafkaSettings, topic: str, verifier: ModelVerifier | None, state: InsightsState,
                            stop: asyncio.Event, dlq: DeadLetterPublisher) -> None:
    consumer = make_consumer(kafka, kafka.federation_servers(), group_id=None)
    await consumer.start()
    try:
        if not await assign_whole_topic(consumer, topic, stop):
            return
        dirty, last_build = False, 0.0
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    dirty |= await _take(record, verifier, state, dlq)
            backlog = any(batches.values())
            if dirty and (not backlog or time.monotonic() - last_build >= REBUILD_EVERY_SECONDS):
                await asyncio.to_thread(state.rebuild)
                dirty, last_build = False, time.monotonic()
    finally:
        await consumer.stop()


async def _take(record: object, verifier: ModelVerifier | None, state: InsightsState,
                dlq: DeadLetterPublisher) -> bool:
    try:
        statistics, counts = await asyncio.to_thread(admit, getattr(record, "value", None), verifier,
                                                     state.config.id_buckets)
    except PoisonMessageError as error:
        reason, detail = error.reason, error.detail
    except Exception as unexpected:  # a bug must not stop the feed: refuse the record, say why, read on
        reason, detail = "unexpected", f"{type(unexpected).__name__}: {unexpected}"
        log.exception("statistics_failed", offset=getattr(record, "offset", None))
    else:
        outcome = state.add_statistics(statistics, counts)
        if outcome is None:
            STATISTICS_ACCEPTED.labels(statistics.region).inc()
            return True
        STATISTICS_REJECTED.labels(outcome).inc()  # a repeat or an unreported region: nothing to keep
        return False
    STATISTICS_REJECTED.labels(reason).inc()
    log.warning("statistics_rejected", reason=reason, detail=detail[:200], offset=getattr(record, "offset", None))
    await dlq.publish_record_quietly(PoisonMessageError(reason, detail), record)
    return False
