"""A catalogue of attacks on a live stack (ingest, aggregator, one trainer, one recommender) on the
embedded broker. Each test sends one hostile class and checks what the threat model promises: no process
exits, no 5xx, the global model moves only for signed, bounded updates, and valid events still train.

The stack is shared by the module (starting it is the expensive part); ``test_zz_nothing_died`` runs
last and checks every process survived everything before it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import GlobalModel, InterestCounts, RegionalStatistics
from facet.federation.model_signing import ModelVerifier
from facet.federation.updates import resigned
from facet.insights.releases import InterestWindow, StatisticsSettings, check_release, release
from facet.kafka.admin import create_all_topics
from facet.kafka.clients import make_consumer, make_producer
from facet.kafka.dlq import REASON_HEADER
from facet.model.network import new_model
from facet.service.models import to_bytes
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_lab.launcher import ServiceProcess
from facet_lab.system.scrape import scrape

from tests.helpers import (
    MODEL_PRIVATE_KEY,
    MODEL_PUBLIC_KEY,
    TINY_MODEL,
    api_keys_env,
    kafka_env,
    model_env,
    signed_update,
    trust_env,
    wait_for,
)

pytestmark = pytest.mark.integration

TRAINER_KEYS = {"trainer-eu": "e" * 32, "trainer-us": "u" * 32}
STORE_KEY, OTHER_STORE_KEY, MERCH_KEY = "store-eu-key", "store-other-key", "merch-key"


class Stack:
    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, processes: dict[str, ServiceProcess],
                 trainer_group: str) -> None:
        self.trainer_group = trainer_group
        self.kafka = kafka
        self.topics = topics
        self.processes = processes
        self.statuses: list[int] = []
        #: Records written to the eu events topic by this module (seeded events and poison alike).
        self.events_sent = 0

    def url(self, name: str, path: str) -> str:
        return self.processes[name].url(path)

    async def request(self, method: str, name: str, path: str, **options: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.request(method, self.url(name, path), **options)
        self.statuses.append(response.status_code)
        return response

    async def send_raw(self, topic: str, value: bytes, key: bytes = b"x") -> None:
        producer = make_producer(self.kafka, self.kafka.events_servers())
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()
        if topic == self.topics.events_topic("eu"):
            self.events_sent += 1

    async def metric(self, name: str, sample: str, label: str | None = None) -> dict[str, float] | float:
        async with httpx.AsyncClient() as client:
            scraped = await scrape(client, self.url(name, "/metrics"))
        return scraped.by_label(sample, label) if label else scraped.total(sample)

    async def aggregator_version(self) -> int:
        return int((await self.request("GET", "aggregator", "/v1/status")).json()["version"])

    async def dead_letters(self, expect_reason: bytes, timeout_s: float = 60) -> list[bytes]:
        consumer = make_consumer(self.kafka, self.kafka.events_servers(), [self.topics.dead_letter], group_id=None)
        await consumer.start()
        reasons: list[bytes] = []
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and expect_reason not in reasons:
                batches = await consumer.getmany(timeout_ms=300)
                reasons += [dict(r.headers)[REASON_HEADER] for rs in batches.values() for r in rs]
        finally:
            await consumer.stop()
        return reasons


@pytest.fixture(scope="module")
def stack(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, enable_idempotence=broker.supports_idempotence)
    suffix = uuid.uuid4().hex[:8]
    topics = TopicSettings(events_pattern=f"r{suffix}.events.{{region}}.v1", updates=f"r{suffix}.updates",
                           models=f"r{suffix}.models", statistics=f"r{suffix}.statistics",
                           dead_letter=f"r{suffix}.dlq", events_partitions=2)
    asyncio.run(create_all_topics(kafka, topics, ["eu", "us"]))
    logs = tmp_path_factory.mktemp("resilience")
    common = kafka_env(kafka, topics)
    processes = {
        "aggregator": ServiceProcess(["aggregator"], {
            **common, **model_env("FACET_AGGREGATOR_"),
            "FACET_AGGREGATOR_MODEL_SIGNING_KEY": MODEL_PRIVATE_KEY,
            "FACET_AGGREGATOR_TRAINER_KEYS": json.dumps(TRAINER_KEYS),
            "FACET_AGGREGATOR_CHECKPOINT_DIR": str(logs / "aggregator-state"),
            "FACET_AGGREGATOR_POLICY__BUFFER_SIZE": "1",
            "FACET_AGGREGATOR_BROADCAST_INTERVAL_S": "0.5",
            "FACET_AGGREGATOR_BROADCAST_EVERY_VERSIONS": "1",
        }, logs, "aggregator"),
        "trainer": ServiceProcess(["trainer", "--region", "eu"], {
            **common, **model_env("FACET_TRAINER_"), **trust_env("FACET_TRAINER_"),
            "FACET_TRAINER_SIGNING_KEY": TRAINER_KEYS["trainer-eu"],
            "FACET_TRAINER_UPDATE_EVERY_SAMPLES": "100", "FACET_TRAINER_UPDATE_EVERY_SECONDS": "1",
            "FACET_TRAINER_BATCH_SIZE": "16", "FACET_TRAINER_GROUP_ID": f"trainer-eu-{suffix}",
            # DP on, as by default, over a few dozen shoppers: far too few for DP to pay, so the test lets any
            # window train (PrivacySettings.max_step_noise) to see the trainer work.
            "FACET_TRAINER_PRIVACY__MAX_STEP_NOISE": "1e6",
            # Interest counts released every 2 s (epsilon 2 per 8 s: a test's budget, not a real one).
            "FACET_TRAINER_STATISTICS__PRIVACY__PERIOD_SECONDS": "8",
            "FACET_TRAINER_STATISTICS__VALUE_BUCKETS": "1024",
        }, logs, "trainer"),
        "recommender": ServiceProcess(["recommender", "--region", "eu"], {
            **common, **model_env("FACET_RECOMMENDER_"), **trust_env("FACET_RECOMMENDER_"),
            **api_keys_env("FACET_RECOMMENDER_", {"store": (STORE_KEY, "eu-web", ["recommendations:read"]),
                                                  "other": (OTHER_STORE_KEY, "elsewhere", ["recommendations:read"]),
                                                  "merch": (MERCH_KEY, None, ["catalogue:write"])}),
            "FACET_RECOMMENDER_MAX_ITEMS": "400", "FACET_RECOMMENDER_ITEM_ANNOUNCEMENTS_PER_MINUTE": "30",
        }, logs, "recommender"),
        "ingest": ServiceProcess(["ingest"], {
            **common, "FACET_INGEST_REGIONS": '["eu", "us"]',
            **api_keys_env("FACET_INGEST_", {"eu-web": (STORE_KEY, "eu-web", ["events:write"])}),
        }, logs, "ingest"),
    }
    try:
        for process in processes.values():
            process.start()
        for process in processes.values():
            process.wait_healthy(90.0)
        built = Stack(kafka, topics, processes, f"trainer-eu-{suffix}")
        asyncio.run(_seed_events(built))
        processes["recommender"].wait_healthy(60.0, "/readyz")
        processes["trainer"].wait_healthy(60.0, "/readyz")
        yield built
    finally:
        for process in processes.values():
            process.stop_quietly()


async def _seed_events(stack: Stack) -> None:
    producer = make_producer(stack.kafka, stack.kafka.events_servers())
    await producer.start()
    try:
        for event in JewelryWorkload(WorkloadConfig(sessions=150, seed=5, regions=("eu",))).events():
            event = event.model_copy(update={"storefront": "eu-web"})
            await producer.send(stack.topics.events_topic("eu"), wire.encode(event), key=event.shopper_id.encode())
            stack.events_sent += 1
        await producer.flush()
    finally:
        await producer.stop()


def _overflowing_update() -> bytes:
    """~100 bytes whose msgpack timestamp lies past year 9999 (OverflowError in the decoder)."""
    return msgpack.packb({"schema": "facet", "v": 1, "kind": "update",
                          "body": {"created_at": msgpack.Timestamp(2**40, 0)}}, datetime=False)


async def test_a_record_whose_timestamp_overflows_is_dead_lettered_and_federation_goes_on(stack: Stack) -> None:
    await stack.send_raw(stack.topics.updates, _overflowing_update())
    assert b"malformed" in await stack.dead_letters(b"malformed")
    version = await stack.aggregator_version()
    update = signed_update(TRAINER_KEYS["trainer-us"].encode(), trainer_id="trainer-us", region="us",
                           base_version=version, seed=1)
    await stack.send_raw(stack.topics.updates, wire.encode(update))

    async def advanced() -> bool:
        return await stack.aggregator_version() > version

    assert await wait_for(advanced), stack.processes["aggregator"].log_tail()


async def test_an_unsigned_model_with_a_huge_version_is_never_loaded(stack: Stack) -> None:
    served = (await stack.request("GET", "recommender", "/v1/recommendations", params={"shopper": "x"},
                                  headers={"X-API-Key": STORE_KEY})).json()["model_version"]
    hijack = GlobalModel(model_name="facet-recommender", version=2**61,
                         parameters=to_bytes(new_model(TINY_MODEL, seed=99).state_dict()))
    await stack.send_raw(stack.topics.models, wire.encode(hijack), key=b"facet-recommender")

    async def refused() -> bool:
        rejected = await stack.metric("recommender", "facet_model_feed_rejected_total", "reason")
        return isinstance(rejected, dict) and rejected.get("unsigned", 0) >= 1

    assert await wait_for(refused)
    after = (await stack.request("GET", "recommender", "/v1/recommendations", params={"shopper": "x"},
                                 headers={"X-API-Key": STORE_KEY})).json()["model_version"]
    assert after < 2**61 and after >= served
    status = (await stack.request("GET", "trainer", "/v1/status")).json()
    assert status["base_version"] < 2**61


async def test_a_decode_bomb_is_rejected_before_it_allocates(stack: Stack) -> None:
    bogus = msgpack.packb({"tensors": {f"t{i}": {"k": "topk", "shape": [2**27], "idx": b"",
                                                 "values": {"q": "fp32", "data": b""}} for i in range(4)}})
    version = await stack.aggregator_version()
    update = signed_update(TRAINER_KEYS["trainer-us"].encode(), trainer_id="trainer-us", region="us",
                           base_version=version, seed=2)
    bomb = resigned(update, TRAINER_KEYS["trainer-us"].encode(), payload=bogus,
                    update_id=f"bomb-{uuid.uuid4().hex}")
    await stack.send_raw(stack.topics.updates, wire.encode(bomb))
    assert b"wrong_tensors" in await stack.dead_letters(b"wrong_tensors")


async def test_a_trainer_key_cannot_speak_for_another_region(stack: Stack) -> None:
    version = await stack.aggregator_version()
    impostor = signed_update(TRAINER_KEYS["trainer-us"].encode(), trainer_id="trainer-us", region="eu",
                             base_version=version, seed=3)
    await stack.send_raw(stack.topics.updates, wire.encode(impostor))
    assert b"wrong_region" in await stack.dead_letters(b"wrong_region")


async def _forwarded_statistics(stack: Stack) -> list[RegionalStatistics]:
    consumer = make_consumer(stack.kafka, stack.kafka.federation_servers(), [stack.topics.statistics],
                             group_id=None)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3_000)
        return [wire.decode(r.value, RegionalStatistics) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()


def _counts(noise_scale: float = 1.0) -> InterestCounts:
    settings = StatisticsSettings(value_buckets=1024)
    space = settings.space(TINY_MODEL.id_buckets)
    window = InterestWindow(settings, space, TINY_MODEL.feature_space().item_bucket)
    counts = release(window.close(), settings, space, np.random.default_rng(0))
    return counts.model_copy(update={"noise_std": counts.noise_std * noise_scale})


async def test_statistics_are_forwarded_signed_only_from_an_authentic_trainer_with_enough_noise(
        stack: Stack) -> None:
    await _seed_events(stack)  # new events: the eu trainer sends updates, its releases ride on them

    async def forwarded() -> bool:
        counts = await stack.metric("aggregator", "facet_aggregator_statistics_forwarded_total", "region")
        return isinstance(counts, dict) and counts.get("eu", 0) >= 1

    assert await wait_for(forwarded, 90), stack.processes["trainer"].log_tail()

    async def sent_alone() -> bool:  # the shoppers went quiet: later windows still go out, without a delta
        counts = await stack.metric("trainer", "facet_trainer_statistics_sent_alone_total", "region")
        return isinstance(counts, dict) and counts.get("eu", 0) >= 1

    assert await wait_for(sent_alone, 60), stack.processes["trainer"].log_tail()
    key = TRAINER_KEYS["trainer-us"].encode()
    version = await stack.aggregator_version()
    impostor = resigned(signed_update(key, trainer_id="trainer-us", region="eu", base_version=version, seed=7),
                        key, statistics=_counts())
    thin = resigned(signed_update(key, trainer_id="trainer-us", region="us", base_version=version, seed=8),
                    key, statistics=_counts(noise_scale=0.1))
    for update in (impostor, thin):
        await stack.send_raw(stack.topics.updates, wire.encode(update))

    async def thin_refused() -> bool:
        refused = await stack.metric("aggregator", "facet_aggregator_statistics_rejected_total", "reason")
        return isinstance(refused, dict) and refused.get("noise_below_budget", 0) >= 1

    assert await wait_for(thin_refused), stack.processes["aggregator"].log_tail()
    records = await _forwarded_statistics(stack)
    verifier = ModelVerifier([MODEL_PUBLIC_KEY])
    assert records and all(verifier.verify_statistics(r) for r in records)
    assert {r.region for r in records} == {"eu"} and {r.trainer_id for r in records} == {"trainer-eu"}
    assert not {impostor.update_id, thin.update_id} & {r.update_id for r in records}
    decoded = check_release(records[0].counts, TINY_MODEL.id_buckets)
    assert decoded.shape == (TINY_MODEL.id_buckets + 1024,)
    status = (await stack.request("GET", "trainer", "/v1/status")).json()["statistics"]
    assert status["enabled"] and status["releases_spent"] >= 1 and status["epsilon_spent"] <= 2.0 + 1e-6


async def test_poison_events_are_dead_lettered_and_valid_events_still_train(stack: Stack) -> None:
    topic = stack.topics.events_topic("eu")
    for poison in (b"\x00garbage", _overflowing_update(), b"\x91" * 50_000):
        await stack.send_raw(topic, poison)
    before = await stack.metric("trainer", "facet_trainer_samples_total")
    await _seed_events(stack)

    async def trained() -> bool:
        return float(await stack.metric("trainer", "facet_trainer_samples_total")) > float(before)  # type: ignore[arg-type]

    assert await wait_for(trained, 120), stack.processes["trainer"].log_tail()

    async def recommender_refused() -> bool:  # it reads the same records on its own schedule
        rejected = await stack.metric("recommender", "facet_recommender_events_rejected_total", "reason")
        return isinstance(rejected, dict) and rejected.get("malformed", 0) >= 3

    assert await wait_for(recommender_refused), stack.processes["recommender"].log_tail()


async def test_hostile_ingest_bodies_get_4xx_never_5xx(stack: Stack) -> None:
    headers = {"X-API-Key": STORE_KEY}
    now = datetime.now(UTC)
    good = {"occurred_at": now.isoformat(), "region": "eu", "storefront": "eu-web", "shopper_id": "s1",
            "session_id": "x", "item_id": "ring-1", "event_type": "view"}
    nested = await stack.request("POST", "ingest", "/v1/events", content=b"[" * 200_000 + b"]" * 200_000,
                                 headers={**headers, "Content-Type": "application/json"})
    assert nested.status_code == 400
    far_future = msgpack.packb({"events": [{**good, "occurred_at": msgpack.Timestamp(2**40, 0)}]}, datetime=False)
    timestamp = await stack.request("POST", "ingest", "/v1/events", content=far_future,
                                    headers={**headers, "Content-Type": "application/msgpack"})
    assert timestamp.status_code == 400
    empty_maps = await stack.request("POST", "ingest", "/v1/events", content=b"\x80" * (4 * 1024 * 1024 - 16),
                                     headers={**headers, "Content-Type": "application/msgpack"})
    assert empty_maps.status_code in (400, 413)
    batch = [good, {**good, "occurred_at": "0001-01-01T00:00:00+05:00"},
             {**good, "occurred_at": "1900-01-01T00:00:00Z"}, {**good, "storefront": "someone-else"},
             {**good, "surprise_key_123": 1}]
    mixed = await stack.request("POST", "ingest", "/v1/events", json={"events": batch}, headers=headers)
    assert mixed.status_code == 202 and mixed.json()["accepted"] == 1 and mixed.json()["rejected"] == 4
    stack.events_sent += 1  # the one valid event went through ingest to the eu topic
    labels = await stack.metric("ingest", "facet_ingest_events_rejected_total", "reason")
    assert isinstance(labels, dict) and "surprise_key_123" not in labels and labels.get("storefront") == 1
    assert labels.get("unknown_field") == 1


async def test_recommender_reads_and_writes_need_the_right_key(stack: Stack) -> None:
    workload = JewelryWorkload(WorkloadConfig(sessions=150, seed=5, regions=("eu",)))
    shopper = next(e.shopper_id for e in workload.events())
    anonymous = await stack.request("GET", "recommender", "/v1/recommendations", params={"shopper": shopper})
    assert anonymous.status_code == 401
    own = await stack.request("GET", "recommender", "/v1/recommendations", params={"shopper": shopper, "k": 50},
                              headers={"X-API-Key": STORE_KEY})
    other = await stack.request("GET", "recommender", "/v1/recommendations", params={"shopper": shopper, "k": 50},
                                headers={"X-API-Key": OTHER_STORE_KEY})
    unknown = await stack.request("GET", "recommender", "/v1/recommendations",
                                  params={"shopper": "never-seen", "k": 50}, headers={"X-API-Key": OTHER_STORE_KEY})
    assert own.status_code == other.status_code == unknown.status_code == 200
    # Another storefront is answered from no history at all, exactly like a shopper never seen (the items
    # themselves may move between two requests as trends update, so the strategy is what is compared).
    assert own.json()["strategy"] != "cold_start"
    assert other.json()["strategy"] == unknown.json()["strategy"] == "cold_start"
    denied = await stack.request("POST", "recommender", "/v1/items", headers={"X-API-Key": STORE_KEY},
                                 json={"item_id": "junk", "attributes": {"category": "ring"}})
    assert denied.status_code == 403
    codes = []
    for index in range(40):
        response = await stack.request("POST", "recommender", "/v1/items", headers={"X-API-Key": MERCH_KEY},
                                       json={"item_id": f"launch-{index}", "attributes": {"category": "ring"}})
        codes.append(response.status_code)
    assert 429 in codes and 201 in codes
    assert set(codes) <= {201, 409, 429}


async def test_zz_nothing_died_and_nothing_answered_5xx(stack: Stack) -> None:
    for name, process in stack.processes.items():
        assert process.process is not None and process.process.poll() is None, f"{name} exited:\n" + (
            process.log_tail())
    assert not [s for s in stack.statuses if s >= 500], stack.statuses
    committed = await _committed(stack, stack.trainer_group, stack.events_sent)
    assert committed == stack.events_sent, "every event (poison included) was consumed and committed"


async def _committed(stack: Stack, group: str, expect: int) -> int:
    from aiokafka import TopicPartition

    async def read() -> int:
        consumer = make_consumer(stack.kafka, stack.kafka.events_servers(), group_id=group)
        await consumer.start()
        try:
            return sum([await consumer.committed(TopicPartition(stack.topics.events_topic("eu"), p)) or 0
                        for p in range(stack.topics.events_partitions)])
        finally:
            await consumer.stop()

    deadline, value = time.monotonic() + 90, 0
    while time.monotonic() < deadline:
        value = await read()
        if value >= expect:
            break
        await asyncio.sleep(1)
    return value
