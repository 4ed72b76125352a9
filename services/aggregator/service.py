"""``facet aggregator``: consume updates, aggregate, broadcast versioned models, checkpoint, commit.

Order of durability (what makes every update count exactly once across crashes):
  1. apply updates in topic order (one partition: a total order);
  2. write a checkpoint holding the model, the applied update ids and the next offsets to read;
  3. only then commit those offsets to the group.
On start the consumer seeks to the checkpoint's offsets (the source of truth), and ids in the checkpoint
reject replays. FedBuff's buffered-but-unapplied updates are not in any checkpoint: their offsets stay
uncommitted, so a restart reads them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import GlobalModel, InterestCounts, ModelUpdate, RegionalStatistics
from facet.errors import PoisonMessageError
from facet.federation.server import AUTHENTICITY_FAILURES, Aggregator, AggregatorState, Outcome
from facet.insights.releases import check_release
from facet.kafka.clients import make_consumer, make_producer
from facet.kafka.dlq import DeadLetterPublisher
from facet.kafka.shutdown import ShutdownSignal
from facet.logging import get_logger
from facet.model.network import new_model
from facet.service.health import Health
from facet.service.http import add_probe_routes, serve
from facet.service.models import artifact_name, from_bytes, prune_artifacts, to_bytes, write_artifact
from facet.service.supervision import TaskSupervisor
from facet_aggregator import checkpoint
from facet_aggregator import metrics as m
from facet_aggregator.settings import AggregatorSettings
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

log = get_logger(__name__)

_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\.safetensors$")


def new_epoch(previous: int) -> int:
    """A generation newer than any before it: wall-clock milliseconds, and never below the last one + 1
    (a wiped or restored aggregator still moves the fleet forward, whatever its version)."""
    return max(previous + 1, time.time_ns() // 1_000_000)


def initial_state(settings: AggregatorSettings) -> AggregatorState:
    if settings.initial_parameters is not None:
        parameters = from_bytes(settings.initial_parameters.read_bytes())
    else:
        parameters = {k: v.clone() for k, v in new_model(settings.model, settings.seed).state_dict().items()}
    return AggregatorState(parameters=parameters)


class SeekToCheckpoint(ConsumerRebalanceListener):
    """On assignment, resume each partition at the offset the checkpoint covers (not the group's
    committed one, which may lag it), and report whether anything is assigned."""

    def __init__(self, consumer: AIOKafkaConsumer, checkpointed: Callable[[], Mapping[int, int]],
                 assigned: Callable[[bool], None]) -> None:
        self.consumer = consumer
        self.checkpointed = checkpointed
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        offsets = self.checkpointed()
        for tp in assigned:
            if tp.partition in offsets:
                self.consumer.seek(tp, offsets[tp.partition])
        self.assigned(bool(assigned))


class AggregatorService:
    def __init__(self, settings: AggregatorSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        restored = checkpoint.load(settings.checkpoint_dir)
        state = restored.state if restored else initial_state(settings)
        state.epoch = new_epoch(state.epoch)
        self.signer = settings.signer()
        # Three offset maps per partition of the updates topic, each "the next offset to read", each a
        # prefix of the one before: see docs/architecture.md ("The aggregator's offsets").
        #  positions:    every record read so far (some may sit in a half-filled FedBuff buffer);
        #  safe_offsets: every record whose effect is in self.aggregator.state (applied or rejected), so
        #                a checkpoint of the state may cover them; never inside a buffer;
        #  _committed:   what the group has committed to Kafka: the offsets of the last durable checkpoint.
        self.safe_offsets: dict[int, int] = dict(restored.offsets) if restored else {}
        self.aggregator = Aggregator(state, settings.policy, settings.keys(), settings.trainer_regions())
        self.health = Health()
        self.health.set("partitions_assigned", False)
        self.health.set("model_broadcast", False)
        self.positions: dict[int, int] = dict(self.safe_offsets)
        self.checkpointed_version = state.version if restored else -1
        self.broadcast_version = -1
        self._committed: dict[int, int] = dict(self.safe_offsets)
        self.last_checkpoint = time.monotonic()
        self.last_broadcast = 0.0
        self.consumer: AIOKafkaConsumer = make_consumer(
            kafka, kafka.federation_servers(), group_id=settings.consumer_group,
            max_poll_records=settings.max_poll_records,
        )
        self.producer = make_producer(kafka, kafka.federation_servers())
        self.dlq = DeadLetterPublisher(self.producer, topics.dead_letter, "aggregator")
        m.GLOBAL_VERSION.set(state.version)
        log.info(
            "aggregator_state",
            version=state.version,
            epoch=state.epoch,
            restored=restored is not None,
            offsets=self.safe_offsets,
            mode=settings.policy.mode,
        )

    @property
    def artifact_dir(self) -> Path:
        return self.settings.checkpoint_dir / "artifacts"

    def http_app(self) -> FastAPI:
        app = FastAPI(title="Facet aggregator", version="1", **self.settings.fastapi_options())
        add_probe_routes(app, self.health)

        @app.get("/v1/artifacts/{name}", tags=["models"], summary="A global model too large for one message")
        async def artifact(name: str) -> FileResponse:
            path = self.artifact_dir / name
            if not _ARTIFACT_NAME.fullmatch(name) or not path.is_file():
                raise HTTPException(404, "no such artifact")
            return FileResponse(path, media_type="application/octet-stream")

        @app.get("/v1/status", tags=["models"], summary="Version and buffer state")
        async def status() -> dict[str, object]:
            return {
                "version": self.aggregator.state.version,
                "epoch": self.aggregator.state.epoch,
                "buffer_fill": self.aggregator.buffer_fill,
                "mode": self.settings.policy.mode,
            }

        return app

    async def run(self, shutdown: ShutdownSignal) -> None:
        stop_http = asyncio.Event()
        supervisor = TaskSupervisor(self.health, shutdown)
        supervisor.start("http", serve(self.http_app(), self.settings.http_host, self.settings.http_port, stop_http,
                                       limit_concurrency=self.settings.http_limit_concurrency))
        await self.producer.start()
        self.consumer.subscribe([self.topics.updates], listener=SeekToCheckpoint(
            self.consumer, lambda: self.safe_offsets, lambda any_assigned: self.health.set("partitions_assigned",
                                                                                      any_assigned)))
        await self.consumer.start()
        try:
            await self._broadcast(force=True)
            while not shutdown.requested:
                batches = await self.consumer.getmany(timeout_ms=500)
                self.health.tick()
                for tp, records in batches.items():
                    for record in records:
                        await self._process(record)
                        self.positions[tp.partition] = record.offset + 1
                        if self.aggregator.buffer_fill == 0:
                            self.safe_offsets = dict(self.positions)
                await self._maybe_checkpoint_and_broadcast()
        except Exception:  # logged here: the drain below may raise too, and would hide this one
            log.exception("aggregator_failed")
            raise
        finally:
            await self._maybe_checkpoint_and_broadcast(final=True)
            await self.consumer.stop()  # leaves the group
            await self.producer.stop()  # flushes
            stop_http.set()
            await supervisor.wait()
            log.info("aggregator_stopped", version=self.aggregator.state.version)

    async def _process(self, record: ConsumerRecord) -> None:
        """One record, whatever its bytes: applied, buffered, or dead-lettered with its reason. Never raises
        for the record's sake, so the loop moves past it and its offset is committed with the rest."""
        started = time.perf_counter()
        try:
            update = wire.decode(record.value, ModelUpdate)
            # Decoding and the axpy run in a worker thread: the loop keeps heartbeating.
            outcome: Outcome = await asyncio.to_thread(self.aggregator.handle, update)
        except PoisonMessageError as error:
            await self._dead_letter(error, record)
            return
        except Exception as unexpected:  # a bug must not halt federation: keep the record, say why, move on
            log.exception("update_failed", offset=record.offset)
            await self._dead_letter(PoisonMessageError("unexpected", f"{type(unexpected).__name__}: {unexpected}"),
                                    record)
            return
        if update.statistics is not None and (outcome.status != "rejected"
                                              or outcome.reason not in AUTHENTICITY_FAILURES):
            await self._forward_statistics(update, update.statistics)
        m.AGGREGATION_SECONDS.observe(time.perf_counter() - started)
        m.BUFFER_FILL.set(self.aggregator.buffer_fill)
        bound = log.bind(
            update_id=update.update_id, region=update.region, base_version=update.base_version, offset=record.offset
        )
        for dropped_id, reason in outcome.dropped:  # buffered earlier, refused at the step: counted and logged
            m.UPDATES_REJECTED.labels(reason).inc()
            log.warning("buffered_update_dropped", update_id=dropped_id, reason=reason)
        if outcome.new_version is not None:
            m.GLOBAL_VERSION.set(outcome.new_version)
        if outcome.status == "rejected":
            bound.warning("update_rejected", reason=outcome.reason, detail=outcome.detail[:200])
            await self._dead_letter(PoisonMessageError(outcome.reason or "unknown", outcome.detail), record)
            return
        if outcome.status == "statistics_only":
            return
        if outcome.clipped:
            m.UPDATES_BOUNDED.labels(outcome.clipped).inc()
        m.UPDATES_APPLIED.labels(self.aggregator.region_label(update)).inc()
        if outcome.staleness is not None:
            m.STALENESS.observe(outcome.staleness)
        if outcome.new_version is not None:
            bound.info("global_model_advanced", version=outcome.new_version, staleness=outcome.staleness)

    async def _forward_statistics(self, update: ModelUpdate, counts: InterestCounts) -> None:
        """An authentic trainer's interest counts, once every claim that can be checked holds, signed with the
        model key onto the statistics topic (consumers trust the aggregator, not each trainer). Only with
        signatures required: without them nobody vouches for where the counts came from."""
        if not self.settings.policy.require_signatures:
            m.STATISTICS_REJECTED.labels("unsigned_federation").inc()
            return
        try:
            await asyncio.to_thread(check_release, counts, self.settings.model.id_buckets)
        except PoisonMessageError as error:
            m.STATISTICS_REJECTED.labels(error.reason).inc()
            log.warning("statistics_rejected", update_id=update.update_id, reason=error.reason,
                        detail=error.detail[:200])
            return
        region = self.aggregator.region_label(update)
        try:
            forwarded = self.signer.sign_statistics(RegionalStatistics(
                region=region, trainer_id=update.trainer_id, update_id=update.update_id, counts=counts))
            encoded = wire.encode(forwarded)
        except Exception:  # a bug here must not halt federation: the update itself is handled already
            m.STATISTICS_REJECTED.labels("unexpected").inc()
            log.exception("statistics_forward_failed", update_id=update.update_id)
            return
        # Raises when the topic cannot be written: the update's offset is not committed, so after the
        # restart it is read again and its counts forwarded then (the insights service drops repeats).
        await self.producer.send_and_wait(self.topics.statistics, encoded, key=region.encode(),
                                          headers=wire.schema_headers(RegionalStatistics))
        m.STATISTICS_FORWARDED.labels(region).inc()

    async def _dead_letter(self, error: PoisonMessageError, record: ConsumerRecord) -> None:
        m.UPDATES_REJECTED.labels(error.reason).inc()
        # Raises when the dead-letter topic cannot be written: the offset is then never committed, and the
        # record is read (and kept) again after the restart.
        await self.dlq.publish_record(error, record)

    async def _maybe_checkpoint_and_broadcast(self, final: bool = False) -> None:
        state = self.aggregator.state
        due = state.version - self.checkpointed_version >= self.settings.checkpoint_every_versions
        # Offsets that moved without a new version (rejected updates, a partial FedBuff buffer) are
        # committed too, but at most every checkpoint_interval_s: a checkpoint writes the whole model.
        moved = self.safe_offsets != self._committed and (
            time.monotonic() - self.last_checkpoint >= self.settings.checkpoint_interval_s
        )
        changed = state.version != self.checkpointed_version or self.safe_offsets != self._committed
        if (final and changed) or due or moved:
            await self._checkpoint()
        await self._broadcast(force=final)

    async def _checkpoint(self) -> None:
        state = self.aggregator.state
        if self.aggregator.buffer_fill:  # never checkpoint half a FedBuff step: offsets stay before it
            offsets = dict(self.safe_offsets)
        else:
            offsets = dict(self.positions)
            self.safe_offsets = dict(offsets)
        try:
            await asyncio.to_thread(
                checkpoint.save, self.settings.checkpoint_dir, state, offsets, self.settings.checkpoints_kept
            )
        except OSError as error:  # disk full, volume gone: keep the last good checkpoint, commit nothing, retry
            m.CHECKPOINT_FAILURES.inc()
            self.health.set("checkpoint_written", False)
            self.last_checkpoint = time.monotonic()
            log.error("checkpoint_failed", version=state.version, error=str(error)[:300])
            return
        self.health.set("checkpoint_written", True)
        m.CHECKPOINTS.inc()
        self.checkpointed_version = state.version
        if offsets:
            await self.consumer.commit(
                {TopicPartition(self.topics.updates, p): OffsetAndMetadata(o, "") for p, o in offsets.items()}
            )
        self._committed = dict(offsets)
        self.last_checkpoint = time.monotonic()

    async def _broadcast(self, force: bool = False) -> None:
        state = self.aggregator.state
        if state.version == self.broadcast_version:
            return
        elapsed = time.monotonic() - self.last_broadcast
        behind = state.version - self.broadcast_version
        if (
            not force
            and elapsed < self.settings.broadcast_interval_s
            and behind < self.settings.broadcast_every_versions
        ):
            return
        # No copy first: the consume loop is waiting on this broadcast, so nothing mutates the model meanwhile.
        blob = await asyncio.to_thread(to_bytes, state.parameters)
        contributors = tuple(state.pending_contributors[-10_000:])
        if len(blob) <= self.settings.inline_model_max_bytes:
            message = GlobalModel(model_name=self.settings.model_name, epoch=state.epoch, version=state.version,
                                  parameters=blob, contributing_updates=contributors)
            transport = "inline"
        else:
            base = self.settings.artifact_base_url or f"http://127.0.0.1:{self.settings.http_port}/v1/artifacts"
            name = artifact_name(self.settings.model_name, state.version, state.epoch)
            try:
                pointer = await asyncio.to_thread(write_artifact, self.artifact_dir, name, blob, base)
                await asyncio.to_thread(prune_artifacts, self.artifact_dir, self.settings.artifacts_kept)
            except OSError as error:  # disk full: no broadcast this time; the next attempt retries
                m.CHECKPOINT_FAILURES.inc()
                log.error("artifact_write_failed", version=state.version, error=str(error)[:300])
                self.last_broadcast = time.monotonic()
                return
            message = GlobalModel(model_name=self.settings.model_name, epoch=state.epoch, version=state.version,
                                  artifact=pointer, contributing_updates=contributors)
            transport = "artifact"
        message = self.signer.sign(message)
        await self.producer.send_and_wait(
            self.topics.models,
            wire.encode(message),
            key=self.settings.model_name.encode(),
            headers=wire.schema_headers(GlobalModel),
        )
        state.pending_contributors.clear()
        self.broadcast_version = state.version
        self.last_broadcast = time.monotonic()
        self.health.set("model_broadcast", True)
        m.BROADCASTS.labels(transport).inc()
        log.info(
            "global_model_broadcast",
            version=state.version,
            bytes=len(blob),
            transport=transport,
            contributors=len(contributors),
        )


async def run_aggregator(settings: AggregatorSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    shutdown = ShutdownSignal()
    shutdown.install()
    service = AggregatorService(settings, kafka, topics)
    with contextlib.suppress(asyncio.CancelledError):
        await service.run(shutdown)
