"""The main job: the whole pipeline on a broker, on a generated workload, ending in a report.

Stage one (platform): start the broker, create topics, stream the generated events into their
regional topics keyed by shopper, read every region back through its consumer group, and check that
nothing was lost or crossed a region.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from facet.config import KafkaSettings, TopicSettings
from facet.contracts import BehaviourEvent
from facet.kafka.admin import create_all_topics
from facet.kafka.broker import provision_broker
from facet.kafka.clients import make_consumer, make_producer
from facet.logging import get_logger
from facet.wire import decode, encode, schema_headers
from facet.workload.generator import JewelryWorkload, WorkloadConfig

log = get_logger(__name__)


class MainJobConfig(BaseModel):
    sessions: int = Field(default=3_000, ge=1)
    seed: int = 7
    out_dir: Path = Path("runs")
    consume_timeout_s: float = Field(default=60.0, gt=0)


class RegionReport(BaseModel):
    produced: int
    consumed: int
    shoppers: int
    wrong_region: int


class MainJobReport(BaseModel):
    started_at: datetime
    broker: str
    broker_kind: str
    events_produced: int
    events_consumed: int
    produce_seconds: float
    consume_seconds: float
    regions: dict[str, RegionReport]
    lost: int


async def run_main_job(config: MainJobConfig, console: Console | None = None) -> Path:
    console = console or Console()
    started = datetime.now(UTC)
    run_dir = config.out_dir / started.strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    with provision_broker(log_path=run_dir / "broker.log") as broker:
        kafka = KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            enable_idempotence=broker.supports_idempotence,
            session_timeout_ms=6_000,
        )
        topics = TopicSettings()
        workload = JewelryWorkload(WorkloadConfig(seed=config.seed, sessions=config.sessions))
        await create_all_topics(kafka, topics, workload.regions)
        produced, produce_s = await _produce(kafka, topics, workload, console)
        consumed, wrong, consume_s = await _consume(kafka, topics, workload.regions, produced, config)
    report = MainJobReport(
        started_at=started,
        broker=broker.bootstrap_servers,
        broker_kind=broker.kind,
        events_produced=sum(produced.values()),
        events_consumed=sum(len(v) for v in consumed.values()),
        produce_seconds=round(produce_s, 3),
        consume_seconds=round(consume_s, 3),
        regions={
            region: RegionReport(
                produced=produced[region],
                consumed=len(consumed[region]),
                shoppers=len({shopper for shopper, _ in consumed[region]}),
                wrong_region=wrong[region],
            )
            for region in workload.regions
        },
        lost=sum(produced.values()) - sum(len(v) for v in consumed.values()),
    )
    path = run_dir / "report.json"
    path.write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    _print_summary(console, report)
    return path


async def _produce(
    kafka: KafkaSettings, topics: TopicSettings, workload: JewelryWorkload, console: Console
) -> tuple[Counter[str], float]:
    producer = make_producer(kafka, kafka.events_servers())
    await producer.start()
    produced: Counter[str] = Counter()
    headers = schema_headers(BehaviourEvent)
    start = time.perf_counter()
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("streaming events", total=None)
            pending = []
            for event in workload.events():
                pending.append(
                    await producer.send(
                        topics.events_topic(event.region),
                        encode(event),
                        key=event.shopper_id.encode(),
                        headers=headers,
                    )
                )
                produced[event.region] += 1
                if len(pending) >= 2_000:
                    for future in pending:
                        await future
                    pending.clear()
                    progress.update(task, completed=sum(produced.values()))
            for future in pending:
                await future
    finally:
        await producer.stop()
    return produced, time.perf_counter() - start


async def _consume(
    kafka: KafkaSettings,
    topics: TopicSettings,
    regions: list[str],
    produced: Counter[str],
    config: MainJobConfig,
) -> tuple[dict[str, set[tuple[str, str]]], Counter[str], float]:
    consumed: dict[str, set[tuple[str, str]]] = {region: set() for region in regions}
    wrong: Counter[str] = Counter()
    start = time.perf_counter()
    for region in regions:
        consumer = make_consumer(
            kafka, kafka.events_servers(), [topics.events_topic(region)], group_id=f"facet-report-{region}"
        )
        await consumer.start()
        try:
            deadline = time.monotonic() + config.consume_timeout_s
            while len(consumed[region]) < produced[region] and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        event = decode(record.value, BehaviourEvent)
                        if event.region != region:
                            wrong[region] += 1
                        consumed[region].add((event.shopper_id, event.event_id))
            await consumer.commit()
        finally:
            await consumer.stop()
    return consumed, wrong, time.perf_counter() - start


def _print_summary(console: Console, report: MainJobReport) -> None:
    table = Table(title=f"Facet run on {report.broker_kind} broker {report.broker}")
    for column in ("region", "produced", "consumed", "shoppers", "wrong region"):
        table.add_column(column, justify="right")
    for region, row in report.regions.items():
        table.add_row(region, str(row.produced), str(row.consumed), str(row.shoppers), str(row.wrong_region))
    console.print(table)
    rate = report.events_produced / report.produce_seconds if report.produce_seconds else 0.0
    console.print(f"{report.events_produced} events in {report.produce_seconds:.1f}s ({rate:,.0f}/s); lost: {report.lost}")
