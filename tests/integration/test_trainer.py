"""Regional trainers on the embedded broker: replicas share a region, survive SIGKILL, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import ModelUpdate
from facet.federation.signing import verify
from facet.kafka.admin import create_all_topics
from facet.kafka.clients import make_consumer, make_producer
from facet.kafka.dlq import REASON_HEADER
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_lab.launcher import ServiceProcess

from tests.helpers import kafka_env, model_env, signed_model, trust_env

pytestmark = pytest.mark.integration
KEY = "k" * 32


def _trainer(region: str, name: str, env: dict[str, str], tmp_path: Path) -> ServiceProcess:
    return ServiceProcess(["trainer", "--region", region], {
        **env, **model_env("FACET_TRAINER_"), **trust_env("FACET_TRAINER_"),
        "FACET_TRAINER_SIGNING_KEY": KEY,
        "FACET_TRAINER_REPLICA_ID": name,
        "FACET_TRAINER_UPDATE_EVERY_SAMPLES": "200",
        "FACET_TRAINER_UPDATE_EVERY_SECONDS": "1",
        "FACET_TRAINER_BATCH_SIZE": "32",
        # DP on, as by default, over a few dozen shoppers: the test lets any window train.
        "FACET_TRAINER_PRIVACY__MAX_STEP_NOISE": "1e6",
    }, tmp_path, name)


async def _committed(kafka: KafkaSettings, topic: str, group: str, partitions: int) -> dict[int, int]:
    consumer = make_consumer(kafka, kafka.events_servers(), group_id=group)
    await consumer.start()
    try:
        result = {}
        for p in range(partitions):
            result[p] = await consumer.committed(TopicPartition(topic, p)) or 0
        return result
    finally:
        await consumer.stop()


async def _read_all(kafka: KafkaSettings, topic: str, expect: int = 1, timeout_s: float = 10) -> list[object]:
    consumer = make_consumer(kafka, kafka.events_servers(), [topic], group_id=None)
    await consumer.start()
    records: list[object] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            records += [r for rs in batches.values() for r in rs]
            if len(records) >= expect and not batches:
                break
    finally:
        await consumer.stop()
    return records


async def test_replicas_share_a_region_survive_sigkill_and_drain_on_sigterm(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings, tmp_path: Path
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["eu", "us"])
    env = kafka_env(kafka_settings, topic_settings)
    suffix = uuid.uuid4().hex[:6]
    env["FACET_TRAINER_GROUP_ID"] = ""  # default group per region, made unique below per region
    producer = make_producer(kafka_settings, kafka_settings.events_servers())
    await producer.start()
    model = signed_model(0, seed=0)
    await producer.send_and_wait(topic_settings.models, wire.encode(model), key=b"facet-recommender")
    events = list(JewelryWorkload(WorkloadConfig(sessions=1200, seed=3, regions=("eu", "us"))).events())
    counts = {"eu": 0, "us": 0}
    for event in events:
        await producer.send(topic_settings.events_topic(event.region), wire.encode(event),
                            key=event.shopper_id.encode())
        counts[event.region] += 1
    await producer.send_and_wait(topic_settings.events_topic("eu"), b"\x00garbage", key=b"x")
    await producer.stop()

    groups = {"eu": f"facet-trainer-eu-{suffix}", "us": f"facet-trainer-us-{suffix}"}
    trainers = {
        "eu-0": _trainer("eu", "eu-0", {**env, "FACET_TRAINER_GROUP_ID": groups["eu"]}, tmp_path),
        "eu-1": _trainer("eu", "eu-1", {**env, "FACET_TRAINER_GROUP_ID": groups["eu"]}, tmp_path),
        "us-0": _trainer("us", "us-0", {**env, "FACET_TRAINER_GROUP_ID": groups["us"]}, tmp_path),
    }
    try:
        for trainer in trainers.values():
            trainer.start()
        await asyncio.to_thread(trainers["eu-0"].wait_healthy)
        await asyncio.sleep(4)  # both eu replicas joined and are mid-stream
        trainers["eu-1"].kill()  # its partitions move to eu-0; its uncommitted events are re-read there
        partitions = topic_settings.events_partitions
        for region, total in (("eu", counts["eu"] + 1), ("us", counts["us"])):
            deadline = time.monotonic() + 90
            committed: dict[int, int] = {}
            while time.monotonic() < deadline:
                committed = await _committed(kafka_settings, topic_settings.events_topic(region), groups[region],
                                             partitions)
                if sum(committed.values()) >= total:
                    break
                await asyncio.sleep(1)
            assert sum(committed.values()) == total, f"{region}: {committed} of {total}\n" + trainers[
                f"{region}-0"].log_tail()
        assert trainers["eu-0"].terminate() == 0
        assert trainers["us-0"].terminate() == 0
    finally:
        for trainer in trainers.values():
            trainer.stop_quietly()

    updates = [wire.decode(r.value, ModelUpdate) for r in await _read_all(kafka_settings, topic_settings.updates)]
    assert {u.region for u in updates} == {"eu", "us"}
    assert all(verify(u, KEY.encode()) for u in updates)
    assert all(u.base_version == 0 and u.codec == "rows+int8+zstd" for u in updates)
    dead = await _read_all(kafka_settings, topic_settings.dead_letter)
    # At least once: a replica killed after dead-lettering but before committing leaves the garbage to its
    # sibling, which dead-letters it again. Every copy is that one record, and it is never lost.
    assert dead and {(dict(r.headers)[REASON_HEADER], r.value) for r in dead} == {(b"malformed", b"\x00garbage")}
    assert len({dict(r.headers)["facet-dlq-source-offset"] for r in dead}) == 1
    drained = trainers["eu-0"].log_path.read_text()
    assert '"reason": "shutdown"' in drained or "trainer_stopped" in drained
