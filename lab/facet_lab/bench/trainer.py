"""``facet bench trainer``: samples/s of a trainer consuming from the broker, against a bare PyTorch loop
over the same examples in memory (same model, optimizer, batch size and thread count)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import torch
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import GlobalModel
from facet.federation.client import LocalLearner
from facet.federation.model_signing import ModelSigner, generate_keypair
from facet.kafka.admin import create_all_topics
from facet.kafka.broker import BrokerHandle
from facet.kafka.clients import make_producer
from facet.kafka.shutdown import ShutdownSignal
from facet.model.features import ItemCatalogue
from facet.model.network import ModelConfig, new_model
from facet.service.model_feed import ModelTrustSettings
from facet.service.models import to_bytes
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_trainer import metrics as trainer_metrics
from facet_trainer.examples import ExampleBuffer
from facet_trainer.service import TrainerService
from facet_trainer.settings import TrainerSettings
from prometheus_client import Counter

CONFIG = ModelConfig(id_buckets=8_192, dim=48, max_history=20)


async def _trainer_rate(broker: BrokerHandle, events: list[Any], batch_size: int) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, enable_idempotence=broker.supports_idempotence,
                          session_timeout_ms=6_000, heartbeat_interval_ms=500)
    topics = TopicSettings()
    await create_all_topics(kafka, topics, ["us"])
    producer = make_producer(kafka, kafka.events_servers())
    await producer.start()
    private_key, public_key = generate_keypair()
    await producer.send_and_wait(topics.models, wire.encode(ModelSigner(private_key).sign(GlobalModel(
        model_name="facet-recommender", version=0, parameters=to_bytes(new_model(CONFIG).state_dict())))),
        key=b"facet-recommender")
    for event in events:
        await producer.send(topics.events_topic("us"), wire.encode(event), key=event.shopper_id.encode())
    await producer.stop()
    settings = TrainerSettings(region="us", signing_key="bench", model=CONFIG, replay_examples=0,
                               model_trust=ModelTrustSettings(public_keys=[public_key]),
                               batch_size=batch_size, update_every_samples=10**9, update_every_seconds=3600,
                               http_port=0)
    service = TrainerService(settings, kafka, topics)
    shutdown = ShutdownSignal()
    task = asyncio.create_task(service.run(shutdown))
    # Read what the service exports, as an operator would: its events and samples counters. Each poll
    # collects just those two metrics (not the whole registry) every 50 ms, so the sampling costs the
    # trainer's event loop almost nothing and times a ~10 s run to within about 1 %.
    first_fetch = last_trained = None
    samples = 0.0
    deadline = time.monotonic() + 900
    while not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = time.perf_counter()
        events_read = _count(trainer_metrics.EVENTS, "us")
        trained = _count(trainer_metrics.SAMPLES, "us")
        if first_fetch is None and events_read > 0:
            first_fetch = now
        if trained != samples:
            samples, last_trained = trained, now
        if events_read >= len(events) and not shutdown.requested:
            shutdown.trigger("benchmark done")  # the remainder below one batch is trained by the drain
    await task
    if first_fetch is None or last_trained is None:
        raise RuntimeError("the trainer trained nothing")
    seconds = last_trained - first_fetch
    return {"samples": int(samples), "seconds": seconds, "samples_per_second": samples / seconds,
            "updates_sent": service.updates_sent}


def _count(counter: Counter, region: str) -> float:
    """A counter's current value for one region, from its own collector."""
    return next((sample.value for metric in counter.collect() for sample in metric.samples
                 if sample.name.endswith("_total") and sample.labels.get("region") == region), 0.0)


def _bare_rate(events: list[Any], batch_size: int) -> dict[str, Any]:
    catalogue = ItemCatalogue(CONFIG.feature_space())
    buffer = ExampleBuffer(catalogue, CONFIG.max_history, 50_000, 200_000)
    region = CONFIG.feature_space().region_bucket("us")
    for event in events:
        buffer.add(event, region)
    windows = buffer.take()
    learner = LocalLearner(CONFIG, "rows+int8+zstd")
    learner.load_global(new_model(CONFIG).state_dict(), 0)
    started = time.perf_counter()
    learner.train(catalogue, windows, batch_size)
    seconds = time.perf_counter() - started
    return {"samples": windows.samples, "seconds": seconds, "samples_per_second": windows.samples / seconds}


def run_trainer_benchmark(broker: BrokerHandle, sessions: int = 8_000, batch_size: int = 128) -> dict[str, Any]:
    torch.set_num_threads(1)
    events = list(JewelryWorkload(WorkloadConfig(sessions=sessions, seed=21, regions=("us",))).events())
    bare = _bare_rate(events, batch_size)
    service = asyncio.run(_trainer_rate(broker, events, batch_size))
    return {
        "summary": {"throughput_ratio_vs_bare_loop": service["samples_per_second"] / bare["samples_per_second"]},
        "trainer": service, "bare_loop": bare, "events": len(events), "batch_size": batch_size,
        "torch_threads": 1,
    }
