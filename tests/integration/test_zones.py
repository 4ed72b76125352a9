"""The zone tier on the embedded broker: two regions' trainers send to their zone's inbox, the zone
aggregator forwards one signed update per step, and the global aggregator applies only the zone's updates
(the trainers' statistics releases reach it alone).
A zone killed mid-run restarts from its checkpoint and forwards again; a forged update in its inbox is
dead-lettered and moves nothing."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.kafka.admin import create_all_topics
from facet.kafka.clients import make_producer
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_lab.launcher import ServiceProcess
from facet_lab.system.scrape import scrape

from tests.helpers import MODEL_PRIVATE_KEY, kafka_env, model_env, signed_update, trust_env, wait_for

pytestmark = pytest.mark.integration

TRAINER_KEYS = {"trainer-jp": "j" * 32, "trainer-in": "i" * 32}
ZONE_KEY = "z" * 32


async def _metric(process: ServiceProcess, sample: str, label: str | None = None) -> Any:
    async with httpx.AsyncClient() as client:
        scraped = await scrape(client, process.url("/metrics"))
    return scraped.by_label(sample, label) if label else scraped.total(sample)


async def _seed(kafka: KafkaSettings, topics: TopicSettings, seed: int) -> None:
    producer = make_producer(kafka, kafka.events_servers())
    await producer.start()
    try:
        for event in JewelryWorkload(WorkloadConfig(sessions=120, seed=seed, regions=("jp", "in"))).events():
            await producer.send(topics.events_topic(event.region), wire.encode(event), key=event.shopper_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def test_a_zone_tier_forwards_its_regions_updates_and_survives_a_kill(broker: Any, tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, enable_idempotence=broker.supports_idempotence)
    suffix = uuid.uuid4().hex[:8]
    topics = TopicSettings(events_pattern=f"z{suffix}.events.{{region}}.v1", updates=f"z{suffix}.updates",
                           zone_updates_pattern=f"z{suffix}.updates.{{zone}}", models=f"z{suffix}.models",
                           statistics=f"z{suffix}.statistics", dead_letter=f"z{suffix}.dlq", events_partitions=1)
    await create_all_topics(kafka, topics, ["jp", "in"], ["apac"])
    common = kafka_env(kafka, topics)
    aggregator = ServiceProcess(["aggregator"], {
        **common, **model_env("FACET_AGGREGATOR_"), "FACET_AGGREGATOR_MODEL_SIGNING_KEY": MODEL_PRIVATE_KEY,
        # The zone's key for its deltas; the trainers' keys for their statistics releases, which go to the
        # global aggregator alone (ACLs keep their deltas in the zone's inbox).
        "FACET_AGGREGATOR_TRAINER_KEYS": json.dumps({"zone-apac": ZONE_KEY, **TRAINER_KEYS}),
        "FACET_AGGREGATOR_CHECKPOINT_DIR": str(tmp_path / "global"), "FACET_AGGREGATOR_POLICY__BUFFER_SIZE": "1",
        "FACET_AGGREGATOR_BROADCAST_INTERVAL_S": "0.5", "FACET_AGGREGATOR_BROADCAST_EVERY_VERSIONS": "1",
    }, tmp_path, "aggregator")
    zone_env = {
        **common, **model_env("FACET_AGGREGATOR_"), **trust_env("FACET_AGGREGATOR_"),
        "FACET_AGGREGATOR_ZONE_SIGNING_KEY": ZONE_KEY, "FACET_AGGREGATOR_TRAINER_KEYS": json.dumps(TRAINER_KEYS),
        "FACET_AGGREGATOR_CHECKPOINT_DIR": str(tmp_path / "zone"),
        # A buffer the two regions never fill: every step is one the zone takes after waiting 2 s (a full
        # buffer's step is the global aggregator's own path, tested with it).
        "FACET_AGGREGATOR_POLICY__BUFFER_SIZE": "50", "FACET_AGGREGATOR_ZONE_MAX_WAIT_S": "2",
        "FACET_AGGREGATOR_GROUP_ID": f"agg-{suffix}", "FACET_AGGREGATOR_CHECKPOINT_INTERVAL_S": "0.5",
    }
    zone = ServiceProcess(["aggregator", "--zone", "apac"], zone_env, tmp_path, "zone")
    trainers = [ServiceProcess(["trainer", "--region", region], {
        **common, **model_env("FACET_TRAINER_"), **trust_env("FACET_TRAINER_"),
        "FACET_TRAINER_SIGNING_KEY": TRAINER_KEYS[f"trainer-{region}"], "FACET_TRAINER_ZONE": "apac",
        "FACET_TRAINER_UPDATE_EVERY_SAMPLES": "50", "FACET_TRAINER_UPDATE_EVERY_SECONDS": "1",
        "FACET_TRAINER_BATCH_SIZE": "16", "FACET_TRAINER_GROUP_ID": f"trainer-{region}-{suffix}",
        "FACET_TRAINER_PRIVACY__ENABLED": "false",
        # Interest counts released every 2 s (epsilon 2 per 8 s: a test's budget, not a real one).
        "FACET_TRAINER_STATISTICS__PRIVACY__PERIOD_SECONDS": "8", "FACET_TRAINER_STATISTICS__VALUE_BUCKETS": "1024",
    }, tmp_path, f"trainer-{region}") for region in ("jp", "in")]
    processes = [aggregator, zone, *trainers]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_healthy(90.0)
        await _seed(kafka, topics, seed=3)

        async def forwarded(at_least: int) -> bool:
            applied = await _metric(aggregator, "facet_aggregator_updates_applied_total", "region")
            return isinstance(applied, dict) and applied.get("apac", 0) >= at_least

        assert await wait_for(lambda: forwarded(1), 120), zone.log_tail() + aggregator.log_tail()
        await _seed(kafka, topics, seed=4)  # the trainers rebase on the zone's first step and train again
        assert await wait_for(lambda: forwarded(2), 120), zone.log_tail() + aggregator.log_tail()
        applied = await _metric(aggregator, "facet_aggregator_updates_applied_total", "region")
        assert set(applied) == {"apac"}, applied  # the global aggregator never applied a trainer's delta

        async def released() -> bool:  # while each region's counts still reach it, alone
            forwarded = await _metric(aggregator, "facet_aggregator_statistics_forwarded_total", "region")
            return isinstance(forwarded, dict) and {"jp", "in"} <= set(forwarded)

        assert await wait_for(released, 60), trainers[0].log_tail() + aggregator.log_tail()
        assert set(await _metric(aggregator, "facet_aggregator_updates_applied_total", "region")) == {"apac"}
        by_region = await _metric(zone, "facet_aggregator_updates_applied_total", "region")
        assert set(by_region) == {"jp", "in"}, by_region  # the zone took both regions' updates
        reasons = await _metric(zone, "facet_aggregator_zone_forwarded_total", "reason")
        assert set(reasons) == {"waited"}, reasons
        async with httpx.AsyncClient() as client:
            status = (await client.get(zone.url("/v1/status"), timeout=5)).json()
        assert status["zone"] == "apac" and status["forwarded"] >= 2 and status["global_version"] >= 1

        # A forged update in the zone's inbox is refused there and reaches nobody.
        producer = make_producer(kafka, kafka.federation_servers())
        await producer.start()
        forged = signed_update(b"x" * 32, trainer_id="trainer-jp", region="jp", base_version=0, seed=1)
        await producer.send_and_wait(topics.zone_updates_topic("apac"), wire.encode(forged))
        await producer.stop()

        async def refused() -> bool:
            rejected = await _metric(zone, "facet_aggregator_updates_rejected_total", "reason")
            return isinstance(rejected, dict) and rejected.get("bad_signature", 0) >= 1

        assert await wait_for(refused, 30), zone.log_tail()

        before = (await _metric(aggregator, "facet_aggregator_updates_applied_total", "region"))["apac"]
        zone.send_signal(signal.SIGKILL)
        zone.wait(10)
        zone.start()
        zone.wait_healthy(90.0)
        await _seed(kafka, topics, seed=5)  # more events: the restarted zone keeps forwarding
        assert await wait_for(lambda: forwarded(int(before) + 1), 120), zone.log_tail()
        rejected = await _metric(aggregator, "facet_aggregator_updates_rejected_total", "reason")
        assert not set(rejected or {}) - {"duplicate"}, rejected  # a resent outbox at most, never a bad update
        assert all(p.exit_code is None for p in (aggregator, *trainers))
    finally:
        for process in processes:
            process.stop_quietly()
