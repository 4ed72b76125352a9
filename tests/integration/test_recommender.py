"""A regional recommender process: serves from events and broadcasts, swaps models without a failed request."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.kafka.admin import create_all_topics
from facet.kafka.clients import make_producer
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_lab.launcher import ServiceProcess

from tests.helpers import api_keys_env, kafka_env, model_env, signed_model, trust_env
from tests.integration.test_ingest import fuzz_openapi

pytestmark = pytest.mark.integration
READER, WRITER = "reader-key", "catalogue-key"


async def _broadcast(producer: object, topic: str, version: int) -> None:
    message = signed_model(version)
    await producer.send_and_wait(topic, wire.encode(message), key=b"facet-recommender")  # type: ignore[attr-defined]


async def test_recommender_serves_swaps_models_live_and_survives_fuzzing(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings, tmp_path: Path
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["eu"])
    producer = make_producer(kafka_settings, kafka_settings.events_servers())
    await producer.start()
    events = list(JewelryWorkload(WorkloadConfig(sessions=300, seed=9, regions=("eu",))).events())
    for event in events:
        await producer.send(topic_settings.events_topic("eu"), wire.encode(event), key=event.shopper_id.encode())
    await _broadcast(producer, topic_settings.models, 1)
    shopper, storefront = events[-1].shopper_id, events[-1].storefront
    keys = api_keys_env("FACET_RECOMMENDER_", {"store": (READER, storefront, ["recommendations:read"]),
                                               "merch": (WRITER, None, ["catalogue:write"])})
    service = ServiceProcess(["recommender", "--region", "eu"],
                             {**kafka_env(kafka_settings, topic_settings), **model_env("FACET_RECOMMENDER_"),
                              **trust_env("FACET_RECOMMENDER_"), **keys, "FACET_RECOMMENDER_MAX_K": "1000",
                              "FACET_RECOMMENDER_DOCS_ENABLED": "true"},
                             tmp_path, "recommender").start()
    try:
        await asyncio.to_thread(service.wait_healthy, 60.0, "/readyz")
        async with httpx.AsyncClient(base_url=service.url(""), headers={"X-API-Key": READER}) as client:
            first = await client.get("/v1/recommendations", params={"shopper": shopper, "k": 5})
            assert first.status_code == 200, first.text
            assert first.json()["model_version"] == 1 and len(first.json()["items"]) == 5
            cold = await client.post("/v1/recommendations", json={"recent_items": [], "k": 3})
            assert cold.json()["strategy"] == "cold_start"
            await _broadcast(producer, topic_settings.models, 2)
            started, statuses, version = time.monotonic(), [], 1
            while version != 2 and time.monotonic() - started < 15:
                response = await client.get("/v1/recommendations", params={"shopper": shopper, "k": 5})
                statuses.append(response.status_code)
                version = response.json().get("model_version", version)
            assert version == 2, "the new model was not served within 15 s"
            assert set(statuses) == {200}, "a request failed during the swap"
            new_item = await client.post("/v1/items", json={"item_id": "launch-1", "attributes": {"category": "ring"},
                                                            "price": 99.0, "currency": "EUR"},
                                         headers={"X-API-Key": WRITER})
            assert new_item.status_code == 201
            everything = await client.post("/v1/recommendations", json={"recent_items": [], "k": 1000})
            assert "launch-1" in {i["item_id"] for i in everything.json()["items"]}
        assert await asyncio.to_thread(fuzz_openapi, service.url(""), {"X-API-Key": READER}, 25) > 25
        assert service.terminate() == 0
    finally:
        service.stop_quietly()
        await producer.stop()
