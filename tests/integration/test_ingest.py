"""The ingest gateway as a real process in front of a real Kafka-protocol broker."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgpack
import pytest
import schemathesis
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import BehaviourEvent
from facet.kafka.admin import create_all_topics
from facet.kafka.broker import EmbeddedTansu
from facet.kafka.clients import make_consumer
from facet_lab.launcher import ServiceProcess
from hypothesis import HealthCheck, settings

from tests.helpers import kafka_env

pytestmark = pytest.mark.integration
API_KEY = "storefront-secret-key"


def _env(kafka: KafkaSettings, topics: TopicSettings) -> dict[str, str]:
    return {
        **kafka_env(kafka, topics),
        "FACET_INGEST_REGIONS": '["eu", "us"]',
        "FACET_INGEST_API_KEY_HASHES": json.dumps({"store-de": hashlib.sha256(API_KEY.encode()).hexdigest()}),
        "FACET_INGEST_MAX_BODY_BYTES": "200000",
        "FACET_INGEST_SEND_TIMEOUT_S": "3",
        "FACET_INGEST_DOCS_ENABLED": "true",
    }


def _event(i: int, region: str = "eu", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "region": region,
        "storefront": "store-de", "shopper_id": f"s{i}", "session_id": f"x{i}", "item_id": f"ring-{i}",
        "event_type": "view", "price": 10.5, "currency": "EUR",
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def ingest(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, TopicSettings,
                                                                                       KafkaSettings]]:
    import asyncio
    import uuid

    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,  # type: ignore[attr-defined]
                          enable_idempotence=broker.supports_idempotence)  # type: ignore[attr-defined]
    suffix = uuid.uuid4().hex[:8]
    topics = TopicSettings(events_pattern=f"i{suffix}.events.{{region}}.v1", updates=f"i{suffix}.u",
                           models=f"i{suffix}.m", dead_letter=f"i{suffix}.dlq")
    asyncio.run(create_all_topics(kafka, topics, ["eu", "us"]))
    service = ServiceProcess(["ingest"], _env(kafka, topics), tmp_path_factory.mktemp("ingest"), "ingest").start()
    try:
        service.wait_healthy(path="/readyz")
        yield service, topics, kafka
    finally:
        assert service.terminate() == 0
        service.stop_quietly()


async def _consume(kafka: KafkaSettings, topic: str, expect: int) -> list[object]:
    consumer = make_consumer(kafka, kafka.events_servers(), [topic], group_id=None)
    await consumer.start()
    records: list[object] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(records) < expect:
            batches = await consumer.getmany(timeout_ms=300)
            records += [r for rs in batches.values() for r in rs]
        batches = await consumer.getmany(timeout_ms=500)  # nothing more may arrive
        records += [r for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return records


async def test_valid_events_reach_their_region_and_each_rejection_says_why(ingest: tuple) -> None:
    service, topics, kafka = ingest
    batch = [_event(1), _event(2, region="us"), _event(3, event_type="wishlist"), _event(4, region="mars"),
             _event(5, price=float("inf")), {"garbage": True}, _event(6, region="eu")]
    async with httpx.AsyncClient() as client:
        response = await client.post(service.url("/v1/events"), headers={"X-API-Key": API_KEY},
                                     content=json.dumps({"events": batch}, allow_nan=True),
                                     params={}, timeout=10)
    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (3, 4)
    reasons = {e["index"]: e["reason"] for e in result["errors"]}
    assert set(reasons) == {2, 3, 4, 5}
    assert "event_type" in reasons[2] and "unknown region" in reasons[3] and "price" in reasons[4]
    eu = await _consume(kafka, topics.events_topic("eu"), 2)
    us = await _consume(kafka, topics.events_topic("us"), 1)
    assert sorted(r.key for r in eu) == [b"s1", b"s6"]
    assert [wire.decode(r.value, BehaviourEvent).region for r in eu + us] == ["eu", "eu", "us"]


async def test_msgpack_auth_size_and_content_type(ingest: tuple) -> None:
    service, _topics, _kafka = ingest
    url = service.url("/v1/events")
    async with httpx.AsyncClient() as client:
        packed = msgpack.packb({"events": [_event(10)]})
        ok = await client.post(url, content=packed, headers={"X-API-Key": API_KEY,
                                                             "Content-Type": "application/msgpack"})
        assert ok.status_code == 202 and ok.json()["accepted"] == 1
        assert (await client.post(url, json={"events": []})).status_code == 401
        assert (await client.post(url, json={"events": []}, headers={"X-API-Key": "wrong"})).status_code == 401
        bearer = await client.post(url, json={"events": []}, headers={"Authorization": f"Bearer {API_KEY}"})
        assert bearer.status_code == 202
        huge = await client.post(url, json={"events": [_event(i) for i in range(2000)]},
                                 headers={"X-API-Key": API_KEY})
        assert huge.status_code == 413
        text = await client.post(url, content=b"hello", headers={"X-API-Key": API_KEY, "Content-Type": "text/plain"})
        assert text.status_code == 415
        broken = await client.post(url, content=b"{not json", headers={"X-API-Key": API_KEY,
                                                                         "Content-Type": "application/json"})
        assert broken.status_code == 400


def fuzz_openapi(base_url: str, headers: dict[str, str], examples: int = 40) -> int:
    """Property-based fuzzing of every operation in a live service's OpenAPI schema; returns cases run."""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            nonlocal ran
            ran += 1
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            assert response.status_code < 500 or (response.status_code == 503 and "Retry-After" in response.headers), (
                case.method, case.path, response.status_code, response.text[:300])

        check()
    return ran


def test_fuzzing_the_ingest_api_finds_no_server_error(ingest: tuple) -> None:
    service, _topics, _kafka = ingest
    assert fuzz_openapi(service.url(""), {"X-API-Key": API_KEY}) > 40
    assert httpx.get(service.url("/healthz")).status_code == 200  # and it is still up


def test_unreachable_broker_gives_a_clear_error_never_a_silent_loss(tmp_path: Path) -> None:
    own_broker = EmbeddedTansu(log_path=tmp_path / "b.log")
    handle = own_broker.start()
    kafka = KafkaSettings(bootstrap_servers=handle.bootstrap_servers, enable_idempotence=False)
    topics = TopicSettings()
    import asyncio

    asyncio.run(create_all_topics(kafka, topics, ["eu", "us"]))
    service = ServiceProcess(["ingest"], _env(kafka, topics), tmp_path, "ingest-down").start()
    try:
        service.wait_healthy(path="/readyz")
        first = httpx.post(service.url("/v1/events"), json={"events": [_event(1)]},
                           headers={"X-API-Key": API_KEY}, timeout=20)
        assert first.status_code == 202 and first.json()["accepted"] == 1
        own_broker.stop()
        down = httpx.post(service.url("/v1/events"), json={"events": [_event(2)]},
                          headers={"X-API-Key": API_KEY}, timeout=30)
        assert down.status_code == 503, down.text
        assert down.headers["Retry-After"]
        assert "Kafka did not acknowledge" in down.json()["detail"]
    finally:
        own_broker.stop()
        service.stop_quietly()
