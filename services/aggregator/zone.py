"""``facet aggregator --zone Z``: the zone tier. Reads the zone's updates topic, aggregates with the same
checks and FedBuff math as the global aggregator (:class:`facet.federation.zones.ZoneAggregator`), and
forwards one signed, compressed update per step to the global updates topic.

Exactly once, by an outbox: a step's forwarded update is written into the checkpoint together with the
state it came from and the offsets past the updates it aggregates; only then are the offsets committed
and the update sent. A crash before the checkpoint leaves nothing durable (the updates are read again);
a crash after it resends the outbox on restart, and the global aggregator drops a repeat by its id.
A partly filled buffer is never checkpointed: its updates stay uncommitted and are read again.
"""

from __future__ import annotations

import asyncio
import time

import torch
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import GlobalModel, ModelUpdate
from facet.errors import PoisonMessageError
from facet.federation.server import AggregatorState, Outcome
from facet.federation.validation import UpdateRejected
from facet.federation.zones import ZoneAggregator
from facet.kafka.clients import make_consumer, make_producer
from facet.kafka.dlq import DeadLetterPublisher
from facet.kafka.shutdown import ShutdownSignal
from facet.logging import get_logger
from facet.model.network import new_model
from facet.service.health import Health
from facet.service.http import add_probe_routes, serve
from facet.service.model_feed import ModelGate, follow_models
from facet.service.supervision import TaskSupervisor
from facet_aggregator import checkpoint
from facet_aggregator import metrics as m
from facet_aggregator.service import SeekToCheckpoint
from facet_aggregator.settings import AggregatorSettings
from fastapi import FastAPI

log = get_logger(__name__)


class ZoneService:
    def __init__(self, settings: AggregatorSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        assert settings.zone is not None and settings.zone_signing_key is not None  # the settings check both
        self.settings = settings
        self.zone = settings.zone
        self.topics = topics
        self.kafka = kafka
        self.inbox = topics.zone_updates_topic(settings.zone)
        restored = checkpoint.load(settings.checkpoint_dir)
        state = restored.state if restored else AggregatorState(
            parameters={k: v.clone() for k, v in new_model(settings.model, settings.seed).state_dict().items()})
        self.tier = ZoneAggregator(settings.zone, state, settings.policy, settings.keys(),
                                   settings.trainer_regions(), codec=settings.zone_codec,
                                   signing_key=settings.zone_signing_key.get_secret_value().encode())
        self.outbox: ModelUpdate | None = wire.decode(restored.outbox, ModelUpdate) \
            if restored and restored.outbox else None
        #: As in the global aggregator: positions read, safe offsets (never inside a buffer), committed.
        self.safe_offsets: dict[int, int] = dict(restored.offsets) if restored else {}
        self.positions = dict(self.safe_offsets)
        self._committed = dict(self.safe_offsets)
        self.last_checkpoint = time.monotonic()
        self.forwarded = 0
        #: When the zone's buffer took its oldest update (None while it is empty).
        self.buffered_since: float | None = None
        self.health = Health()
        self.health.set("partitions_assigned", False)
        self.health.set("global_model_seen", False)
        self.consumer: AIOKafkaConsumer = make_consumer(kafka, kafka.federation_servers(),
                                                        group_id=settings.consumer_group,
                                                        max_poll_records=settings.max_poll_records)
        self.producer = make_producer(kafka, kafka.federation_servers())
        self.dlq = DeadLetterPublisher(self.producer, topics.dead_letter, f"aggregator-zone-{self.zone}")
        log.info("zone_state", zone=self.zone, steps=state.version, restored=restored is not None,
                 offsets=self.safe_offsets, outbox=self.outbox.update_id if self.outbox else None)

    def http_app(self) -> FastAPI:
        app = FastAPI(title=f"Facet zone aggregator ({self.zone})", version="1", **self.settings.fastapi_options())
        add_probe_routes(app, self.health)

        @app.get("/v1/status", tags=["models"], summary="The zone's steps, buffer and global version")
        async def status() -> dict[str, object]:
            return {"zone": self.zone, "steps": self.tier.state.version,
                    "buffer_fill": self.tier.aggregator.buffer_fill,
                    "global_version": self.tier.global_version, "forwarded": self.forwarded,
                    "inbox": self.inbox, "forwards_to": self.topics.updates}

        return app

    async def on_model(self, parameters: dict[str, torch.Tensor], model: GlobalModel) -> None:
        self.tier.follow(model.generation)
        self.health.set("global_model_seen", True)
        m.GLOBAL_VERSION.set(model.version)

    async def run(self, shutdown: ShutdownSignal) -> None:
        stop = asyncio.Event()
        supervisor = TaskSupervisor(self.health, shutdown)
        supervisor.start("http", serve(self.http_app(), self.settings.http_host, self.settings.http_port, stop,
                                       limit_concurrency=self.settings.http_limit_concurrency))
        await self.producer.start()
        gate = ModelGate.for_model(self.settings.model_name, self.settings.model_trust, self.settings.model)
        model_dlq = DeadLetterPublisher(self.producer, self.topics.dead_letter, f"aggregator-zone-{self.zone}")
        supervisor.start("models", follow_models(self.kafka, self.topics.models, gate, self.on_model, stop,
                                                 model_dlq))
        try:
            if self.outbox is not None:  # durable but perhaps never delivered: send it (again)
                await self._send(self.outbox, reason="outbox")
            while self.tier.global_generation is None and not shutdown.requested:
                self.health.tick()  # staleness needs the global version: read nothing before it is known
                await shutdown.wait(0.2)
            self.consumer.subscribe([self.inbox], listener=SeekToCheckpoint(
                self.consumer, lambda: self.safe_offsets,
                lambda any_assigned: self.health.set("partitions_assigned", any_assigned)))
            await self.consumer.start()
            while not shutdown.requested:
                batches = await self.consumer.getmany(timeout_ms=500)
                self.health.tick()
                for tp, records in batches.items():
                    for record in records:
                        await self._process(record)
                        self.positions[tp.partition] = record.offset + 1
                        if self.tier.aggregator.buffer_fill == 0:
                            self.safe_offsets = dict(self.positions)
                await self._step_if_waited_too_long()
                if self.safe_offsets != self._committed and (
                        time.monotonic() - self.last_checkpoint >= self.settings.checkpoint_interval_s):
                    await self._checkpoint(None)  # rejections moved the offsets: commit them now and then
        except Exception:
            log.exception("zone_aggregator_failed", zone=self.zone)
            raise
        finally:
            if self.safe_offsets != self._committed:
                await self._checkpoint(None)
            await self.consumer.stop()
            await self.producer.stop()
            stop.set()
            await supervisor.wait()
            log.info("zone_aggregator_stopped", zone=self.zone, forwarded=self.forwarded)

    async def _process(self, record: ConsumerRecord) -> None:
        """One record, whatever its bytes: buffered, forwarded as part of a step, or dead-lettered."""
        try:
            update = wire.decode(record.value, ModelUpdate)
            if not update.carries_delta:
                raise PoisonMessageError("no_delta", "a zone aggregates deltas; releases go to the global topic")
            await self._catch_up(update)
            outcome: Outcome
            outcome, forwarded = await asyncio.to_thread(self.tier.handle, update)
        except PoisonMessageError as error:
            await self._dead_letter(error, record)
            return
        except Exception as unexpected:  # a bug must not halt the zone: keep the record, say why, move on
            log.exception("update_failed", offset=record.offset)
            await self._dead_letter(PoisonMessageError("unexpected", f"{type(unexpected).__name__}: {unexpected}"),
                                    record)
            return
        m.BUFFER_FILL.set(self.tier.aggregator.buffer_fill)
        if self.tier.aggregator.buffer_fill == 0:
            self.buffered_since = None
        elif self.buffered_since is None:
            self.buffered_since = time.monotonic()
        if outcome.status == "rejected":
            log.warning("update_rejected", update_id=update.update_id, reason=outcome.reason,
                        detail=outcome.detail[:200])
            await self._dead_letter(PoisonMessageError(outcome.reason or "unknown", outcome.detail), record)
        else:
            m.UPDATES_APPLIED.labels(self.tier.aggregator.region_label(update)).inc()
            if outcome.staleness is not None:
                m.STALENESS.observe(outcome.staleness)
        for dropped_id, reason in outcome.dropped:  # buffered earlier, refused at the step
            m.UPDATES_REJECTED.labels(reason).inc()
            log.warning("buffered_update_dropped", update_id=dropped_id, reason=reason)
        # Even when this update itself was refused at the step, the others in the buffer were stepped.
        if forwarded is not None:
            past = {**self.positions, record.partition: record.offset + 1}
            await self._checkpoint(forwarded, past)
            await self._send(forwarded, reason="full")

    async def _step_if_waited_too_long(self) -> None:
        """Forward what a partly filled buffer holds once its oldest update has waited ``zone_max_wait_s``.
        Every record read is then accounted for (the buffer is empty), so the checkpoint covers them all."""
        limit = self.settings.zone_max_wait_s
        if not limit or self.buffered_since is None or time.monotonic() - self.buffered_since < limit:
            return
        forwarded = await asyncio.to_thread(self.tier.flush)
        self.buffered_since = None
        m.BUFFER_FILL.set(self.tier.aggregator.buffer_fill)
        if forwarded is None:  # every buffered update was refused at the step: only the offsets move
            self.safe_offsets = dict(self.positions)
            return
        await self._checkpoint(forwarded, dict(self.positions))
        await self._send(forwarded, reason="waited")

    async def _catch_up(self, update: ModelUpdate) -> None:
        """A trainer may rebase onto a broadcast a moment before this zone has read it: for an authentic
        update only, wait (bounded) for the zone's own view to reach its base instead of refusing it."""
        if update.base_version <= self.tier.global_version:
            return
        try:
            self.tier.aggregator.authenticate(update)
        except UpdateRejected:
            return  # the tier refuses it for what it is, without waiting
        deadline = time.monotonic() + self.settings.zone_catch_up_s
        while update.base_version > self.tier.global_version and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _checkpoint(self, outbox: ModelUpdate | None, offsets: dict[int, int] | None = None) -> None:
        offsets = dict(offsets if offsets is not None else self.safe_offsets)
        encoded = wire.encode(outbox) if outbox is not None else None
        # A failed write raises: the outbox must be durable before anything is sent or committed.
        await asyncio.to_thread(checkpoint.save, self.settings.checkpoint_dir, self.tier.state, offsets,
                                self.settings.checkpoints_kept, encoded)
        m.CHECKPOINTS.inc()
        self.safe_offsets = offsets
        if offsets:
            await self.consumer.commit({TopicPartition(self.inbox, p): OffsetAndMetadata(o, "")
                                        for p, o in offsets.items()})
        self._committed = dict(offsets)
        self.last_checkpoint = time.monotonic()

    async def _send(self, update: ModelUpdate, reason: str) -> None:
        await self.producer.send_and_wait(self.topics.updates, wire.encode(update), key=self.zone.encode(),
                                          headers=wire.schema_headers(ModelUpdate))
        self.forwarded += 1
        m.ZONE_FORWARDED.labels(reason).inc()
        m.ZONE_FORWARDED_BYTES.inc(len(update.payload))
        log.info("zone_update_forwarded", zone=self.zone, reason=reason, update_id=update.update_id,
                 samples=update.num_samples,
                 bytes=len(update.payload), base_version=update.base_version)

    async def _dead_letter(self, error: PoisonMessageError, record: ConsumerRecord) -> None:
        m.UPDATES_REJECTED.labels(error.reason).inc()
        await self.dlq.publish_record(error, record)


async def run_zone(settings: AggregatorSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    shutdown = ShutdownSignal()
    shutdown.install()
    await ZoneService(settings, kafka, topics).run(shutdown)
