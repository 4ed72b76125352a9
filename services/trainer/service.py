"""``facet trainer --region R``: learn from region R's events, publish compressed signed deltas.

At-least-once, never lose an event: offsets are committed only after the update built from those
events has been acknowledged by Kafka. Before partitions are revoked (rebalance, SIGTERM) the pending
examples are trained, the update is sent and the offsets committed, so a sibling replica picks up
exactly where this one stopped. A SIGKILLed replica's uncommitted events are re-read by its sibling.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np
import torch
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import BehaviourEvent, GlobalModel, InterestCounts, ModelUpdate
from facet.errors import PoisonMessageError
from facet.federation.client import LocalLearner
from facet.federation.updates import signed_update
from facet.insights.releases import InterestWindow, release
from facet.kafka.clients import make_consumer, make_producer
from facet.kafka.dlq import DeadLetterPublisher
from facet.kafka.lag import consumer_lag
from facet.kafka.shutdown import ShutdownSignal
from facet.logging import get_logger
from facet.model.examples import Windows
from facet.model.features import ItemCatalogue, stable_bucket
from facet.privacy.accounting import PrivacyBudget
from facet.service.health import Health
from facet.service.http import add_probe_routes, serve
from facet.service.model_feed import ModelGate, follow_models
from facet.service.supervision import TaskSupervisor
from facet_trainer import metrics as m
from facet_trainer.examples import ExampleBuffer
from facet_trainer.freshness import FreshnessTracker
from facet_trainer.settings import TrainerSettings
from fastapi import FastAPI

log = get_logger(__name__)


class _DrainOnRevoke(ConsumerRebalanceListener):
    """Before partitions move away, train what is pending, send its update and commit (``drain``), so the
    new owner starts exactly where this replica stopped; report whether anything is assigned."""

    def __init__(self, drain: Callable[[], Awaitable[None]], assigned: Callable[[bool], None]) -> None:
        self.drain = drain
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            await self.drain()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assigned(bool(assigned))
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))


class TrainerService:
    def __init__(self, settings: TrainerSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.region = settings.region
        self.topic = topics.events_topic(settings.region)
        self.space = settings.model.feature_space()
        self.region_bucket = self.space.region_bucket(settings.region)
        self.catalogue = ItemCatalogue(self.space)
        self.private = settings.privacy.enabled
        self.examples = ExampleBuffer(self.catalogue, settings.model.max_history, settings.window_max_shoppers,
                                      settings.window_max_items, settings.replay_examples,
                                      collect_examples=not self.private)
        self.learner = LocalLearner(settings.model, settings.codec, lr=settings.lr, privacy=settings.privacy,
                                    seed=stable_bucket("replica/" + settings.replica_id, 2**31))
        self.budget = PrivacyBudget(settings.privacy) if self.private else None
        #: Why the last round under DP trained nothing ("paced", "budget_exhausted", "too_few_shoppers": the
        #: window is too small for its noise, see PrivacySettings.max_step_noise), None when it trained.
        self.privacy_state: str | None = None
        self._new_events_since_update = False
        statistics = settings.statistics
        self.count_space = statistics.space(self.space.id_buckets)
        self.interest = InterestWindow(statistics, self.count_space, self.space.item_bucket) \
            if statistics.enabled else None
        self.statistics_budget = PrivacyBudget(statistics.privacy)
        self.pending_releases: deque[InterestCounts] = deque()
        self.freshness = FreshnessTracker()
        self.releases_closed = 0
        self._noise = np.random.default_rng()  # seeded from the OS: the noise must not be predictable
        self.health = Health()
        self.health.set("partitions_assigned", False)
        self.health.set("model_loaded", False)
        self.lock = asyncio.Lock()
        self.consumed: dict[int, int] = {}
        self.newest_version = -1
        self.last_send = time.monotonic()
        self.updates_sent = 0
        self._training: asyncio.Task[None] | None = None
        self.consumer = make_consumer(kafka, kafka.events_servers(), group_id=settings.group_id,
                                      max_poll_records=500)
        self.producer = make_producer(kafka, kafka.federation_servers())
        self.dlq_producer = make_producer(kafka, kafka.events_servers())
        self.dlq = DeadLetterPublisher(self.dlq_producer, topics.dead_letter, f"trainer-{self.region}")
        self.log = log.bind(region=self.region, replica=settings.replica_id)

    def http_app(self) -> FastAPI:
        app = FastAPI(title=f"Facet trainer ({self.region})", version="1", **self.settings.fastapi_options())
        add_probe_routes(app, self.health)

        @app.get("/v1/status", tags=["training"])
        async def status() -> dict[str, object]:
            return {"region": self.region, "base_version": self.learner.base_version,
                    "updates_sent": self.updates_sent, "window_shoppers": self.examples.shoppers,
                    "privacy": self.privacy_status(), "statistics": self.statistics_status()}

        return app

    def statistics_status(self) -> dict[str, object]:
        if self.interest is None:
            return {"enabled": False}
        privacy = self.settings.statistics.privacy
        return {"enabled": True, "unit": "shopper", "epsilon_spent": self.statistics_budget.epsilon(),
                "epsilon_budget": privacy.epsilon, "delta": privacy.delta,
                "period_seconds": privacy.period_seconds, "releases_per_period": privacy.steps_per_period,
                "releases_spent": self.statistics_budget.steps, "releases_closed": self.releases_closed,
                "pending": len(self.pending_releases), "window_shoppers": len(self.interest)}

    def privacy_status(self) -> dict[str, object]:
        """The region's budget as ops and auditors read it: what is spent, what is allowed, until when."""
        if self.budget is None:
            return {"enabled": False}
        privacy = self.settings.privacy
        return {"enabled": True, "unit": "shopper", "epsilon_spent": self.budget.epsilon(),
                "epsilon_budget": privacy.epsilon, "delta": privacy.delta,
                "period_seconds": privacy.period_seconds, "period_ends_at": self.budget.period_ends_at,
                "steps_spent": self.budget.steps, "steps_per_period": privacy.steps_per_period,
                "noise_multiplier": privacy.noise_multiplier(), "sample_rate": privacy.sample_rate,
                "clip_norm": privacy.clip_norm, "exhausted": self.budget.exhausted,
                "max_step_noise": privacy.max_step_noise, "shoppers_needed": privacy.shoppers_needed(),
                "state": self.privacy_state or "training"}

    async def on_model(self, parameters: dict[str, torch.Tensor], model: GlobalModel) -> None:
        self.newest_version = model.version  # the feed hands over only newer generations
        for wait in self.freshness.served(model.contributing_updates, time.time()).tolist():
            m.EVENT_FRESHNESS.labels(self.region).observe(max(0.0, wait))
        async with self.lock:
            if self.learner.load_global(parameters, model.version, model.epoch):
                m.BASE_VERSION.labels(self.region).set(model.version)
                self.health.set("model_loaded", True)
                self.log.info("rebased", epoch=model.epoch, version=model.version)

    @property
    def signing_key(self) -> bytes:
        """The trainer's HMAC key for everything it sends (empty: unsigned, which the aggregator refuses)."""
        return self.settings.signing_key.get_secret_value().encode() if self.settings.signing_key else b""

    @property
    def deltas_topic(self) -> str:
        zone = self.settings.zone
        return self.topics.updates if zone is None else self.topics.zone_updates_topic(zone)

    async def run(self, shutdown: ShutdownSignal) -> None:
        stop = asyncio.Event()
        supervisor = TaskSupervisor(self.health, shutdown)
        gate = ModelGate.for_model(self.settings.model_name, self.settings.model_trust, self.settings.model)
        await self.producer.start()
        await self.dlq_producer.start()
        model_dlq = DeadLetterPublisher(self.producer, self.topics.dead_letter, f"trainer-{self.region}")
        supervisor.start("http", serve(self.http_app(), self.settings.http_host, self.settings.http_port, stop,
                                       limit_concurrency=self.settings.http_limit_concurrency))
        supervisor.start("models", follow_models(self.kafka, self.topics.models, gate, self.on_model, stop,
                                                 model_dlq))
        self.consumer.subscribe([self.topic], listener=_DrainOnRevoke(
            lambda: self.flush(reason="partitions_revoked"),
            lambda any_assigned: self.health.set("partitions_assigned", any_assigned)))
        await self.consumer.start()
        if self.budget is not None:
            m.DP_EPSILON_BUDGET.labels(self.region).set(self.settings.privacy.epsilon)
            self.log.info("privacy_budget", unit="shopper", epsilon=self.settings.privacy.epsilon,
                          delta=self.settings.privacy.delta, period_seconds=self.settings.privacy.period_seconds,
                          noise_multiplier=self.settings.privacy.noise_multiplier())
        else:
            self.log.warning("privacy_disabled", note="development only: updates carry no DP guarantee")
        try:
            while not shutdown.requested:
                if not self.learner.ready:  # nothing to train from yet: do not read ahead of the buffer
                    self.health.tick()
                    await shutdown.wait(0.2)
                    continue
                batches = await self.consumer.getmany(timeout_ms=300, max_records=500)
                self.health.tick()
                await self._close_interest_window()  # before counting more: a window ends at its interval
                for tp, records in batches.items():
                    for record in records:
                        await self._ingest(record)
                        self.consumed[tp.partition] = record.offset + 1
                    m.EVENTS.labels(self.region).inc(len(records))
                self._new_events_since_update |= any(batches.values())
                if not self.private and len(self.examples) >= self.settings.batch_size:
                    await self._train_in_background()
                due = time.monotonic() - self.last_send >= self.settings.update_every_seconds
                if self.learner.unsent_samples >= self.settings.update_every_samples or (
                    # consumed: events that made no example (a shopper's first, a poison) are committed too;
                    # a pending release goes out even when the region's shoppers went quiet
                    due and (self.learner.unsent_samples or len(self.examples) or self.consumed
                             or self.pending_releases)
                ):
                    await self.flush(reason="threshold")
                for partition, lag in (await consumer_lag(self.consumer)).items():
                    m.CONSUMER_LAG.labels(self.region, str(partition)).set(lag)
                m.WINDOW_SHOPPERS.labels(self.region).set(self.examples.shoppers)
        except Exception:  # logged here: the drain below may raise too, and would hide this one
            self.log.exception("trainer_failed")
            raise
        finally:
            await self.flush(reason="shutdown")
            await self.consumer.stop()  # leaves the group: the sibling takes over at once
            stop.set()
            await supervisor.wait()
            await self.producer.stop()
            await self.dlq_producer.stop()
            self.log.info("trainer_stopped", updates_sent=self.updates_sent)

    async def _ingest(self, record: object) -> None:
        """One record, whatever its bytes: into the example buffer, or dead-lettered with its reason (then committed
        with the rest, so it is never read again)."""
        value = getattr(record, "value", None)
        try:
            event = wire.decode(value, BehaviourEvent)
            if event.region != self.region:
                raise PoisonMessageError("wrong_region", f"{event.region} event on {self.topic}")
            self.examples.add(event, self.region_bucket)
            timestamp = getattr(record, "timestamp", None)  # ms, set when ingest wrote the record
            if isinstance(timestamp, int) and timestamp > 0:
                self.freshness.covered(timestamp / 1000)
            if self.interest is not None:
                self.interest.add(event)
            return
        except PoisonMessageError as poison:
            error = poison
        except Exception as unexpected:  # a bug must not stall the region: keep the record and say why
            error = PoisonMessageError("unexpected", f"{type(unexpected).__name__}: {unexpected}")
            self.log.exception("event_failed", offset=getattr(record, "offset", None))
        await self.dlq.publish_record(error, record)  # raises if it cannot be kept: nothing is committed then

    async def _train_in_background(self) -> None:
        """Train the pending examples in a worker thread while the loop fetches and decodes the next ones.

        Backpressure: when the buffer holds many batches beyond the one in training, wait for it, so the
        pending examples (and memory) stay bounded however fast events arrive.
        """
        running = self._training
        if running is not None and not running.done():
            if len(self.examples) < 8 * self.settings.batch_size:
                return
            await running
        elif running is not None:
            running.result()  # surface a failure of the previous round
        windows = self.examples.take()
        self._training = asyncio.create_task(self._train_windows(windows))

    async def _train(self) -> None:
        """Finish the training in flight, then train whatever is pending (used before every update)."""
        if self.private:
            await self._train_private()
            return
        if self._training is not None:
            await self._training
            self._training = None
        if not len(self.examples) or not self.learner.ready:
            return
        await self._train_windows(self.examples.take())

    async def _train_windows(self, windows: Windows) -> None:
        async with self.lock:
            loss = await asyncio.to_thread(self.learner.train, self.catalogue, windows, self.settings.batch_size)
        m.SAMPLES.labels(self.region).inc(windows.samples)  # new and replayed examples alike
        m.LOCAL_LOSS.labels(self.region).set(loss)

    async def _train_private(self) -> None:
        """Under DP: a few DP-SGD steps over every shopper in the window, as many as the budget allows now.
        Nothing new since the last update: no steps (the budget is kept for when shoppers return)."""
        if not self.learner.ready or not self._new_events_since_update or self.budget is None:
            return
        self._new_events_since_update = False
        pool = self.examples.shopper_windows(self.region_bucket)
        steps = min(self.settings.private_steps_per_update, self.budget.steps_allowed())
        state = (("budget_exhausted" if self.budget.exhausted else "paced") if not steps
                 else "too_few_shoppers" if self.settings.privacy.too_few_shoppers(pool.shoppers) else None)
        m.DP_BUDGET_EXHAUSTED.labels(self.region).set(1 if state == "budget_exhausted" else 0)
        if state != self.privacy_state:
            self.log.info("privacy_state", state=state or "training", epsilon_spent=self.budget.epsilon(),
                          steps_spent=self.budget.steps, period_ends_at=self.budget.period_ends_at,
                          window_shoppers=pool.shoppers,
                          step_noise=round(self.settings.privacy.step_noise(pool.shoppers), 4))
        self.privacy_state = state
        if state is not None:
            m.DP_ROUNDS_SKIPPED.labels(self.region, state).inc()
            return
        self.budget.spend(steps)  # before training: a crash mid-way over-counts, never under-counts
        before = self.learner.unsent_samples
        async with self.lock:
            loss = await asyncio.to_thread(self.learner.train_private, self.catalogue, pool, steps)
        m.DP_STEPS.labels(self.region).inc(steps)
        m.DP_EPSILON.labels(self.region).set(self.budget.epsilon())
        m.SAMPLES.labels(self.region).inc(self.learner.unsent_samples - before)
        m.LOCAL_LOSS.labels(self.region).set(loss)

    async def _close_interest_window(self) -> None:
        """At the end of each release interval: the window's counts, noised, wait for the next update.
        Every interval releases, empty or not, so whether a release exists says nothing about anybody."""
        if self.interest is None or not self.interest.due:
            return
        refused = self.interest.refused_shoppers
        window = self.interest.close()
        if refused:
            m.STATISTICS_REFUSED_SHOPPERS.labels(self.region).inc(refused)
        if self.statistics_budget.steps_allowed() < 1:
            m.STATISTICS_DROPPED.labels(self.region, "budget_exhausted").inc()
            self.log.warning("statistics_budget_exhausted", epsilon_spent=self.statistics_budget.epsilon())
            return
        self.statistics_budget.spend(1)  # before the release exists: a crash over-counts, never under-counts
        counts = await asyncio.to_thread(release, window, self.settings.statistics, self.count_space, self._noise)
        self.pending_releases.append(counts)
        self.releases_closed += 1
        while len(self.pending_releases) > self.settings.statistics.max_pending:
            self.pending_releases.popleft()
            m.STATISTICS_DROPPED.labels(self.region, "no_update_to_ride").inc()
        m.STATISTICS_RELEASES.labels(self.region).inc()
        m.STATISTICS_EPSILON.labels(self.region).set(self.statistics_budget.epsilon())
        self.log.info("statistics_closed", shoppers=window.shoppers, window_start=window.start.isoformat(),
                      epsilon_spent=self.statistics_budget.epsilon(), release_id=counts.release_id)

    async def flush(self, reason: str) -> None:
        """Train what is pending, send the update, wait for the ack, then commit what it covered."""
        await self._train()
        covered = dict(self.consumed)
        async with self.lock:
            prepared = await asyncio.to_thread(self.learner.prepare_update)
        statistics: InterestCounts | None = None
        if prepared is not None:
            # Through a zone tier, deltas are averaged before the global aggregator sees them: releases go
            # to it alone instead (below).
            statistics = self.pending_releases[0] if self.pending_releases and self.settings.zone is None \
                else None
            update = prepared.signed(self.signing_key, trainer_id=self.settings.trainer_id or "", region=self.region,
                                     statistics=statistics)
            await self.producer.send_and_wait(self.deltas_topic, wire.encode(update),
                                              key=self.region.encode(), headers=wire.schema_headers(ModelUpdate))
            self.updates_sent += 1
            if self.settings.zone is None:  # broadcasts name a zone's forwarded updates, not its trainers'
                m.FRESHNESS_FORGOTTEN.labels(self.region).inc(self.freshness.sent(update.update_id))
            if statistics is not None:
                self.pending_releases.popleft()
            m.UPDATES_SENT.labels(self.region).inc()
            m.UPDATE_BYTES.labels(self.region).observe(len(prepared.payload))
            m.UPDATE_RAW_BYTES.labels(self.region).inc(prepared.raw_bytes)
            m.COMPRESSION_RATIO.labels(self.region).set(prepared.raw_bytes / max(len(prepared.payload), 1))
            m.SAMPLES_PER_SECOND.labels(self.region).set(self.learner.last_samples_per_second)
            m.STALENESS_AT_SEND.labels(self.region).set(max(0, self.newest_version - prepared.base_version))
            self.log.info("update_sent", reason=reason, samples=prepared.num_samples, bytes=len(prepared.payload),
                          base_version=prepared.base_version, update_id=update.update_id,
                          statistics=statistics.release_id if statistics else None)
        if statistics is None and self.pending_releases and self.learner.base_version is not None:
            await self._send_release_only(self.pending_releases[0])
            self.pending_releases.popleft()
        self.last_send = time.monotonic()
        if covered:
            offsets = {TopicPartition(self.topic, p): OffsetAndMetadata(o, "") for p, o in covered.items()}
            try:
                await self.consumer.commit(offsets)
            except Exception as error:  # a partition moved away meanwhile: its new owner re-reads (at least once)
                self.log.warning("commit_failed", error=str(error))
            for partition in covered:
                if self.consumed.get(partition) == covered[partition]:
                    del self.consumed[partition]

    async def _send_release_only(self, statistics: InterestCounts) -> None:
        """A release with no delta (``num_samples`` 0): nothing was trained since the last update, and the
        counts must not wait for shoppers to return (nor be dropped when more windows close meanwhile)."""
        update = signed_update(self.signing_key, trainer_id=self.settings.trainer_id or "", region=self.region,
                               base_version=self.learner.base_version or 0, num_samples=0,
                               codec=self.learner.codec.name, payload=b"", statistics=statistics)
        await self.producer.send_and_wait(self.topics.updates, wire.encode(update), key=self.region.encode(),
                                          headers=wire.schema_headers(ModelUpdate))
        m.STATISTICS_SENT_ALONE.labels(self.region).inc()
        self.log.info("statistics_sent", update_id=update.update_id, statistics=statistics.release_id)


async def run_trainer(settings: TrainerSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    torch.set_num_threads(1)  # one core per replica: scale out with replicas, not threads
    shutdown = ShutdownSignal()
    shutdown.install()
    await TrainerService(settings, kafka, topics).run(shutdown)
