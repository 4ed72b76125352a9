"""The aggregator applies every update exactly once across SIGKILLs and restarts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import torch
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import ModelUpdate
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState
from facet.federation.staleness import PolynomialStaleness
from facet.kafka.admin import create_all_topics
from facet.kafka.clients import make_producer
from facet.model.network import new_model
from facet_aggregator import checkpoint
from facet_lab.launcher import ServiceProcess

from tests.helpers import MODEL_PRIVATE_KEY, TINY_MODEL, kafka_env, model_env, signed_update

pytestmark = pytest.mark.integration

KEYS = {"trainer-eu": b"e" * 32, "trainer-us": b"u" * 32}
POLICY = AggregationPolicy(mode="fedbuff", buffer_size=3, server_lr=1.0,
                           staleness=PolynomialStaleness(exponent=0.5), max_staleness=1000)


def _stream(count: int) -> list[ModelUpdate]:
    """A deterministic stream with hostile updates mixed in (each must be rejected the same way)."""
    updates: list[ModelUpdate] = []
    for i in range(count):
        trainer = "trainer-eu" if i % 2 else "trainer-us"
        region = "eu" if i % 2 else "us"
        update = signed_update(KEYS[trainer], trainer_id=trainer, region=region, base_version=i // 6, seed=i,
                               num_samples=50 + i, update_id=f"u{i:04d}", codec="int8+zstd" if i % 3 else "fp32")
        updates.append(update)
        if i % 10 == 4:
            updates.append(update)  # a replay
        if i % 10 == 7:
            updates.append(update.model_copy(update={"update_id": f"forged{i}", "signature": "0" * 64}))
    return updates


def _reference(updates: list[ModelUpdate]) -> dict[str, torch.Tensor]:
    parameters = {k: v.clone() for k, v in new_model(TINY_MODEL, 0).state_dict().items()}
    aggregator = Aggregator(AggregatorState(parameters=parameters), POLICY, KEYS)
    for update in updates:
        aggregator.handle(update)
    return aggregator.state.parameters


async def _status(service: ServiceProcess) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(service.url("/v1/status"), timeout=1)).json()
        except httpx.HTTPError:
            return {}


async def test_sigkilled_aggregator_applies_every_update_exactly_once(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings, tmp_path: Path
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["eu", "us"])
    updates = _stream(48)
    env = {
        **kafka_env(kafka_settings, topic_settings),
        **model_env("FACET_AGGREGATOR_"),
        "FACET_AGGREGATOR_MODEL_SIGNING_KEY": MODEL_PRIVATE_KEY,
        "FACET_AGGREGATOR_TRAINER_KEYS": json.dumps({k: v.decode() for k, v in KEYS.items()}),
        "FACET_AGGREGATOR_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "FACET_AGGREGATOR_CHECKPOINT_EVERY_VERSIONS": "2",
        "FACET_AGGREGATOR_GROUP_ID": f"agg-{tmp_path.name}",
        "FACET_AGGREGATOR_POLICY": POLICY.model_dump_json(),
        "FACET_AGGREGATOR_MAX_POLL_RECORDS": "2",
    }
    producer = make_producer(kafka_settings, kafka_settings.federation_servers())
    await producer.start()

    async def produce() -> None:
        for update in updates:
            await producer.send_and_wait(topic_settings.updates, wire.encode(update), key=update.region.encode())
            await asyncio.sleep(0.05)

    expected_version = 16  # 48 valid updates, 3 per FedBuff step
    kills = 0
    service = ServiceProcess(["aggregator"], env, tmp_path, "aggregator").start()
    try:
        producing = asyncio.create_task(produce())
        await asyncio.to_thread(service.wait_healthy)
        for target in (2, 6, 10):  # kill mid-stream, at different points
            deadline = time.monotonic() + 60
            while (await _status(service)).get("version", 0) < target and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            service.kill()
            kills += 1
            service = ServiceProcess(["aggregator"], env, tmp_path, "aggregator").start()
            await asyncio.to_thread(service.wait_healthy)
        await producing
        deadline = time.monotonic() + 90
        while (await _status(service)).get("version", 0) < expected_version and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert (await _status(service)).get("version") == expected_version, service.log_tail()
        assert service.terminate() == 0
    finally:
        service.stop_quietly()
        await producer.stop()

    restored = checkpoint.load(tmp_path / "ckpt")
    assert restored is not None and kills == 3
    assert restored.state.version == expected_version
    assert len(restored.state.applied_ids) == 48
    reference = _reference(updates)
    for name, tensor in reference.items():
        torch.testing.assert_close(restored.state.parameters[name], tensor, rtol=0, atol=0)
