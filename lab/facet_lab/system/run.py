"""``facet run``: the whole system on one machine, each service its own process, with a live view.

ingest ← workload generator (HTTP, at a set rate) → facet.events.<region>.v1 → trainers (one group per
region, two replicas for the largest) → facet.updates.v1 → aggregator → facet.models.v1 → recommenders
(one per region) and the live evaluator. Stops after ``duration_s`` or on Ctrl-C, drains every process
with SIGTERM, and writes a report (JSON + PNG) under ``out_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import torch
from facet.config import DEFAULT_REGIONS, KafkaSettings, TopicSettings
from facet.contracts import BehaviourEvent, GlobalModel, ProductRecord
from facet.federation.model_signing import generate_keypair
from facet.kafka.admin import create_all_topics
from facet.kafka.broker import provision_broker
from facet.logging import get_logger
from facet.model.network import ModelConfig
from facet.privacy.settings import PrivacySettings
from facet.service import metric_names as names
from facet.service.auth import hash_api_key
from facet.service.model_feed import ModelGate, ModelTrustSettings, follow_models
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from pydantic import BaseModel, Field
from rich.console import Console
from rich.live import Live
from rich.table import Table

from facet_lab.insights_view import summarize_insights
from facet_lab.system.live_eval import LiveEvaluator, federated_vs_centralized
from facet_lab.system.report import write_report
from facet_lab.system.scrape import Scrape, histogram_quantile, scrape
from facet_lab.system.supervisor import Supervisor

log = get_logger(__name__)

#: The model every process of the main job shares (small enough to broadcast inline).
SYSTEM_MODEL = ModelConfig(id_buckets=8_192, dim=48, max_history=20)


class SystemConfig(BaseModel):
    duration_s: float = Field(default=180.0, gt=0)
    events_per_second: float = Field(default=400.0, gt=0)
    regions: tuple[str, ...] = DEFAULT_REGIONS
    seed: int = 7
    out_dir: Path = Path("runs")
    held_out_share: float = Field(default=0.15, ge=0, lt=1)
    eval_interval_s: float = Field(default=10.0, gt=0)
    #: Chaos: SIGKILL this process at this second (it is restarted and the report says so).
    kill_process: str | None = None
    kill_at_s: float = 60.0
    #: Replay a real dataset instead of the generator: "jewelry" or "retail".
    replay: str | None = None
    batch_size: int = Field(default=200, ge=1, le=1000)
    #: Shopper-level DP in the trainers (on by default in the trainer service, compose and Kubernetes). Off in
    #: the main job by default: its few thousand shoppers per region are far too few for DP to pay (measured
    #: with DP on: live NDCG@10 0.035 against popularity's 0.069; README "Privacy"). ``facet run --privacy``.
    privacy: bool = False
    #: Per shopper per day; the run spends a day's budget (its trainers' planned steps) within its duration.
    epsilon: float = Field(default=8.0, gt=0, le=100)
    #: Seconds between a trainer's updates, and DP-SGD steps per update.
    update_every_s: float = Field(default=4.0, gt=0)
    private_steps_per_update: int = Field(default=5, ge=1)
    #: At the end, a centralized model trained this many epochs on the same events (``facet eval``'s
    #: synthetic setting), scored on the same held-out cases as the federated one; 0 skips it.
    centralized_epochs: int = Field(default=8, ge=0, le=100)

    def trainer_privacy(self) -> PrivacySettings:
        """The trainers' budget: the steps they can take in the run are a day's, so the report's epsilon is
        what a day of this traffic would cost each shopper (the period is a day, aligned to UTC)."""
        steps = max(1, int(self.duration_s / self.update_every_s) + 2) * self.private_steps_per_update
        return PrivacySettings(enabled=self.privacy, epsilon=self.epsilon, steps_per_period=steps, pace=False)

    def statistics_env(self) -> dict[str, str]:
        """The trainers' interest counts: a day's release (one, at the default epsilon 2) within the run, so
        the insights service reads counts before it ends; the report states the period as it is."""
        return {"FACET_TRAINER_STATISTICS__PRIVACY__PERIOD_SECONDS": str(self.duration_s)}


def _env_value(value: object) -> str:
    """A setting as pydantic-settings reads it from the environment (JSON for lists and tuples)."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(list(value)) if isinstance(value, list | tuple) else str(value)


def _model_env(prefix: str) -> dict[str, str]:
    return {f"{prefix}MODEL__{k.upper()}": _env_value(v) for k, v in SYSTEM_MODEL.model_dump().items()}


class SystemRun:
    def __init__(self, config: SystemConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.started = time.monotonic()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out = config.out_dir / stamp
        self.supervisor = Supervisor(self.out / "logs")
        self.workload: JewelryWorkload | None = None
        self.evaluator = LiveEvaluator(SYSTEM_MODEL, is_launch=self._is_launch)
        self.timeline: list[dict[str, Any]] = []
        self.sent_events = 0
        self.rejected_events = 0
        self.http_errors: dict[str, int] = {}
        self.latest_model: tuple[int, dict[str, torch.Tensor]] | None = None
        self.status: dict[str, Any] = {}
        self.stop = asyncio.Event()
        self._last_eval = 0.0
        self._last_sent = 0
        self._last_t = 0.0
        self._chaos_done = False
        self.announced: set[str] = set()
        self.insights: dict[str, Any] | None = None
        self.centralized: dict[str, Any] | None = None
        self.insights_key = self.catalogue_key = ""
        #: Keys this run hands out: one per storefront (ingest and the recommenders bind each key to its
        #: storefront), and the model key pair (the aggregator signs, everyone else verifies).
        self.storefront_keys: dict[str, str] = {}
        self.model_private_key, self.model_public_key = generate_keypair()
        #: The storefront of each shopper of the first region, so the sample request uses the right key.
        self.sample_storefronts: dict[str, str] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # ---- processes ----------------------------------------------------------------------------
    def storefronts(self) -> list[str]:
        """Every storefront the workload writes as (generator: <region>-app/-web; replays: one each)."""
        return [*(f"{r}-{kind}" for r in self.config.regions for kind in ("app", "web")), "jewelry-web", "retail-web"]

    def start_services(self, bootstrap: str, idempotence: bool) -> None:
        trainer_keys = {f"trainer-{r}": secrets.token_hex(32) for r in self.config.regions}
        self.storefront_keys = {storefront: secrets.token_urlsafe(24) for storefront in self.storefronts()}
        trust = {"MODEL_TRUST__PUBLIC_KEYS": json.dumps([self.model_public_key])}
        common = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "FACET_KAFKA_ENABLE_IDEMPOTENCE": str(idempotence).lower(),
            "FACET_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "FACET_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "FACET_LOG_LEVEL": "INFO",
        }
        self.supervisor.start("aggregator", ["aggregator"], {
            **common, **_model_env("FACET_AGGREGATOR_"),
            "FACET_AGGREGATOR_TRAINER_KEYS": json.dumps(trainer_keys),
            "FACET_AGGREGATOR_MODEL_SIGNING_KEY": self.model_private_key,
            "FACET_AGGREGATOR_CHECKPOINT_DIR": str(self.out / "state" / "aggregator"),
            "FACET_AGGREGATOR_POLICY__MODE": "fedbuff",
            "FACET_AGGREGATOR_POLICY__BUFFER_SIZE": "3",
            "FACET_AGGREGATOR_BROADCAST_INTERVAL_S": "3",
        })
        largest = self.config.regions[0]
        for region in self.config.regions:
            replicas = 2 if region == largest else 1
            for replica in range(replicas):
                name = f"trainer-{region}-{replica}"
                self.supervisor.start(name, ["trainer", "--region", region], {
                    **common, **_model_env("FACET_TRAINER_"), **{f"FACET_TRAINER_{k}": v for k, v in trust.items()},
                    "FACET_TRAINER_SIGNING_KEY": trainer_keys[f"trainer-{region}"],
                    "FACET_TRAINER_REPLICA_ID": name,
                    "FACET_TRAINER_UPDATE_EVERY_SAMPLES": "600",
                    "FACET_TRAINER_UPDATE_EVERY_SECONDS": str(self.config.update_every_s),
                    "FACET_TRAINER_BATCH_SIZE": "128",
                    "FACET_TRAINER_PRIVATE_STEPS_PER_UPDATE": str(self.config.private_steps_per_update),
                    **{f"FACET_TRAINER_PRIVACY__{k.upper()}": _env_value(v)
                       for k, v in self.config.trainer_privacy().model_dump().items()},
                    **self.config.statistics_env(),
                })
        for region in self.config.regions:
            name = f"recommender-{region}"
            readers = {f"reader-{storefront}": {"key_sha256": [hash_api_key(key)], "storefront": storefront,
                                                 "scopes": ["recommendations:read"]}
                       for storefront, key in self.storefront_keys.items()}
            self.supervisor.start(name, ["recommender", "--region", region], {
                **common, **_model_env("FACET_RECOMMENDER_"), **{f"FACET_RECOMMENDER_{k}": v for k, v in trust.items()},
                "FACET_RECOMMENDER_API_KEYS": json.dumps(readers),
            })
        self.insights_key, self.catalogue_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.supervisor.start("insights", ["insights-service"], {
            **common, **_model_env("FACET_INSIGHTS_"), **{f"FACET_INSIGHTS_{k}": v for k, v in trust.items()},
            "FACET_INSIGHTS_API_KEYS": json.dumps({
                "merchandising": {"key_sha256": [hash_api_key(self.insights_key)], "scopes": ["insights:read"]},
                "catalogue-feed": {"key_sha256": [hash_api_key(self.catalogue_key)], "scopes": ["catalogue:write"]}}),
            "FACET_INSIGHTS_CATALOGUE_FILE": str(self.write_product_feed()),
            "FACET_INSIGHTS_SECURE_COOKIE": "false",  # plain HTTP on loopback
        })
        self.supervisor.start("ingest", ["ingest"], {
            **common,
            "FACET_INGEST_REGIONS": json.dumps(list(self.config.regions)),
            "FACET_INGEST_API_KEY_HASHES": json.dumps({storefront: hash_api_key(key)
                                                       for storefront, key in self.storefront_keys.items()}),
            # The generator's clock starts in January 2026 and replays reach back to 2010: both are history.
            "FACET_INGEST_MAX_EVENT_AGE_DAYS": "36500",
        })

    def write_product_feed(self) -> Path:
        """The seller's product feed for the insights service: the generator's catalogue at the start (items
        it launches later are announced as they first sell); replays have no feed of their own."""
        path = self.out / "products.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        if self.config.replay is None:
            catalogue = JewelryWorkload(WorkloadConfig(seed=self.config.seed, sessions=1)).catalogue
            lines = [ProductRecord(item_id=item_id, attributes=catalogue.attributes(i), price=catalogue.price_usd[i],
                                   currency="USD").model_dump_json(exclude_none=True)
                     for i, item_id in enumerate(catalogue.item_ids)]
        path.write_text("\n".join(lines) + "\n")
        return path

    async def announce_launches(self, client: httpx.AsyncClient, batch: list[BehaviourEvent]) -> None:
        """Announce each item the generator launched to the insights service once, as merchandising would."""
        for event in batch:
            if event.item_id in self.announced or not self._is_launch(event.item_id) or event.attributes is None:
                continue
            self.announced.add(event.item_id)
            with contextlib.suppress(httpx.HTTPError):
                await client.post(self.url("insights", "/v1/items"), headers={"X-API-Key": self.catalogue_key},
                                  json={"item_id": event.item_id, "attributes": event.attributes.model_dump(
                                      exclude_none=True)}, timeout=5)

    def url(self, name: str, path: str) -> str:
        return self.supervisor.processes[name].url(path)

    async def wait_ready(self, client: httpx.AsyncClient, names: list[str], timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url(name, "/healthz"), timeout=1.0)).status_code == 200:
                        pending.discard(name)
            self.supervisor.check()
            await asyncio.sleep(0.5)
        if pending:
            raise TimeoutError(f"services not up after {timeout_s}s: {sorted(pending)}")

    # ---- workload -----------------------------------------------------------------------------
    def events(self) -> Any:
        if self.config.replay:
            from facet.evaluation.datasets import DatasetName, load_events

            events = load_events(DatasetName(self.config.replay))
            events.sort(key=lambda e: e.occurred_at)
            allowed = set(self.config.regions)
            return iter([e for e in events if e.region in allowed])
        regions = tuple(r for r in self.config.regions)
        self.workload = JewelryWorkload(WorkloadConfig(seed=self.config.seed, sessions=10_000_000, regions=regions))
        return self.workload.events()

    def _is_launch(self, item_id: str) -> bool:
        """Whether the generator launched this item during the run (replays know no launches)."""
        if self.workload is None:
            return False
        index = self.workload.catalogue.index_of(item_id)
        return index is not None and self.workload.catalogue.released_at[index] > 0

    async def produce(self, client: httpx.AsyncClient) -> None:
        import random

        rng = random.Random(self.config.seed)
        stream = self.events()
        batch: list[BehaviourEvent] = []
        session: list[BehaviourEvent] = []
        interval = self.config.batch_size / self.config.events_per_second
        next_send = time.monotonic()
        while not self.stop.is_set():
            event = next(stream, None)
            if event is None:
                break
            if session and event.session_id != session[-1].session_id:
                self._route_session(session, batch, rng)
                session = []
            session.append(event)
            if len(batch) >= self.config.batch_size:
                await asyncio.sleep(max(0.0, next_send - time.monotonic()))
                next_send = max(next_send + interval, time.monotonic() - 1.0)
                await self._post_by_storefront(client, batch)
                await self.announce_launches(client, batch)
                batch = []
        if batch:
            await self._post_by_storefront(client, batch)

    def _route_session(self, session: list[BehaviourEvent], batch: list[BehaviourEvent], rng: Any) -> None:
        hold = len(session) >= 2 and rng.random() < self.config.held_out_share
        for event in session[:-1] if hold else session:
            if event.region == self.config.regions[0]:
                self.sample_storefronts[event.shopper_id] = event.storefront
            self.evaluator.sent(event)
            batch.append(event)
        if hold:
            self.evaluator.hold_out(session[-1])

    async def _post_by_storefront(self, client: httpx.AsyncClient, batch: list[BehaviourEvent]) -> None:
        """Each storefront's events with that storefront's own key, as real storefronts would send them."""
        groups: dict[str, list[BehaviourEvent]] = {}
        for event in batch:
            groups.setdefault(event.storefront, []).append(event)
        for storefront, events in groups.items():
            await self._post(client, {"X-API-Key": self.storefront_keys.get(storefront, "unknown")}, events)

    async def _post(self, client: httpx.AsyncClient, headers: dict[str, str], batch: list[BehaviourEvent]) -> None:
        body = {"events": [e.model_dump(mode="json") for e in batch]}
        for attempt in range(30):
            try:
                response = await client.post(self.url("ingest", "/v1/events"), json=body, headers=headers, timeout=30)
            except httpx.HTTPError as error:
                self.http_errors[type(error).__name__] = self.http_errors.get(type(error).__name__, 0) + 1
                await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))
                continue
            if response.status_code == 202:
                result = response.json()
                self.sent_events += result["accepted"]
                self.rejected_events += result["rejected"]
                return
            self.http_errors[str(response.status_code)] = self.http_errors.get(str(response.status_code), 0) + 1
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        log.error("batch_not_delivered", events=len(batch))

    # ---- monitoring ---------------------------------------------------------------------------
    async def on_model(self, parameters: dict[str, torch.Tensor], model: GlobalModel) -> None:
        self.latest_model = (model.version, parameters)

    async def monitor(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(1.0)
            try:
                await self._monitor_once(client)
            except Exception:  # the live view must never take the run down; the log says why
                log.exception("monitor_iteration_failed")

    async def _monitor_once(self, client: httpx.AsyncClient) -> None:
        self.supervisor.check()
        now = self.elapsed()
        if self.config.kill_process and not self._chaos_done and now >= self.config.kill_at_s:
            pid = self.supervisor.kill(self.config.kill_process)
            self.console.log(f"chaos: SIGKILLed {self.config.kill_process} (pid {pid})")
            self._chaos_done = True
        aggregator = await scrape(client, self.url("aggregator", "/metrics"))
        update_bytes = raw_bytes = 0.0
        #: Per region, the most any of its replicas has spent this period (each keeps its own budget).
        epsilon_spent: dict[str, float] = {}
        epsilon_budget: dict[str, float] = {}
        freshness: list[tuple[str, dict[str, str], float]] = []
        for name in self.supervisor.processes:
            if name.startswith("trainer-"):
                trainer = await scrape(client, self.url(name, "/metrics"))
                freshness += [s for s in trainer.samples if s[0].startswith(names.TRAINER_EVENT_FRESHNESS)]
                update_bytes += trainer.total(names.TRAINER_UPDATE_BYTES + "_sum")
                raw_bytes += trainer.total(names.TRAINER_UPDATE_RAW_BYTES_TOTAL)
                for region, value in trainer.by_label(names.TRAINER_DP_EPSILON, "region").items():
                    epsilon_spent[region] = max(value, epsilon_spent.get(region, 0.0))
                epsilon_budget.update(trainer.by_label(names.TRAINER_DP_EPSILON_BUDGET, "region"))
        rate = (self.sent_events - self._last_sent) / max(now - self._last_t, 1e-6)
        self._last_sent, self._last_t = self.sent_events, now
        staleness_count = aggregator.total(names.AGGREGATOR_UPDATE_STALENESS + "_count")
        self.status = {
            "t": round(now, 1),
            "events_per_second": rate,
            "events_sent": self.sent_events,
            "global_version": aggregator.total(names.AGGREGATOR_GLOBAL_VERSION),
            "updates_applied": aggregator.total(names.AGGREGATOR_UPDATES_APPLIED_TOTAL),
            "updates_rejected": aggregator.by_label(names.AGGREGATOR_UPDATES_REJECTED_TOTAL, "reason"),
            "updates_applied_by_region": aggregator.by_label(names.AGGREGATOR_UPDATES_APPLIED_TOTAL, "region"),
            "mean_staleness": aggregator.total(names.AGGREGATOR_UPDATE_STALENESS + "_sum") / staleness_count
            if staleness_count else 0.0,
            "update_bytes": update_bytes,
            "update_raw_bytes": raw_bytes,
            "dp_epsilon_spent_by_region": epsilon_spent or self.status.get("dp_epsilon_spent_by_region", {}),
            "dp_epsilon_budget_by_region": epsilon_budget or self.status.get("dp_epsilon_budget_by_region", {}),
            "freshness_by_region": freshness_by_region(Scrape(freshness)) or self.status.get("freshness_by_region",
                                                                                             {}),
            "regions": self.status.get("regions", {}),
            "popularity_ndcg10": self.status.get("popularity_ndcg10"),
            "model_version_evaluated": self.status.get("model_version_evaluated"),
            "ndcg10": self.status.get("ndcg10"),
            "regional_popularity_ndcg10": self.status.get("regional_popularity_ndcg10"),
        }
        if self.latest_model is not None and now - self._last_eval >= self.config.eval_interval_s:
            self._last_eval = now
            version, parameters = self.latest_model
            results = await asyncio.to_thread(self.evaluator.evaluate, parameters, self.evaluator.snapshot())
            if results:
                self.status["regions"] = results
                self.status["model_version_evaluated"] = version
                weights = {r: v["cases"] for r, v in results.items()}
                total = sum(weights.values())
                self.status["ndcg10"] = sum(v["ndcg10"] * weights[r] for r, v in results.items()) / total
                self.status["popularity_ndcg10"] = sum(
                    v["ndcg10_popularity"] * weights[r] for r, v in results.items()) / total
                self.status["regional_popularity_ndcg10"] = sum(
                    v["ndcg10_regional_popularity"] * weights[r] for r, v in results.items()) / total
        self.timeline.append(dict(self.status))

    def view(self) -> Table:
        status = self.status
        table = Table(title=f"Facet: the whole system ({self.elapsed():.0f}s / {self.config.duration_s:.0f}s)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("events/s into ingest", f"{status.get('events_per_second', 0):,.0f}")
        table.add_row("events accepted", f"{self.sent_events:,}")
        table.add_row("global version", f"{status.get('global_version', 0):.0f}")
        table.add_row("updates applied", f"{status.get('updates_applied', 0):.0f}")
        table.add_row("updates rejected", json.dumps(status.get("updates_rejected", {})) or "0")
        table.add_row("mean staleness", f"{status.get('mean_staleness', 0):.2f}")
        spent, budgets = status.get("dp_epsilon_spent_by_region", {}), status.get("dp_epsilon_budget_by_region", {})
        table.add_row("DP epsilon spent / budget (per shopper, this period)",
                      " ".join(f"{r} {spent.get(r, 0):.2f}/{budgets[r]:g}" for r in sorted(budgets)) or "DP off")
        table.add_row("update MB sent (float32 MB)",
                      f"{status.get('update_bytes', 0) / 1e6:.2f} ({status.get('update_raw_bytes', 0) / 1e6:.1f})")
        for region, values in sorted(status.get("regions", {}).items()):
            table.add_row(f"NDCG@10 {region}",
                          f"{values['ndcg10']:.3f} (popularity {values['ndcg10_popularity']:.3f}, "
                          f"regional {values['ndcg10_regional_popularity']:.3f})")
        if status.get("ndcg10") is not None:
            table.add_row("NDCG@10 all regions", f"{status['ndcg10']:.3f} (popularity "
                          f"{status['popularity_ndcg10']:.3f})")
        fresh = status.get("freshness_by_region", {})
        if fresh:
            table.add_row("event → served model p50/p95 s", " ".join(
                f"{r} {v['p50']:.0f}/{v['p95']:.0f}" for r, v in sorted(fresh.items())))
        launches = self.evaluator.launches.summary()
        if launches["launch_steps_scored"]:
            table.add_row("HR@10 on launched items", f"{launches['hr10_launched']:.3f} over "
                          f"{launches['launch_steps_scored']} steps (warm items {launches['hr10_warm'] or 0:.3f})")
        incidents = self.supervisor.incidents
        if incidents:
            table.add_row("incidents", f"{len(incidents)} (last: {incidents[-1].get('process')})")
        return table

    # ---- the whole run ------------------------------------------------------------------------
    async def run(self) -> Path:
        with provision_broker(log_path=self.out / "logs" / "broker.log") as broker:
            kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                  enable_idempotence=broker.supports_idempotence)
            topics = TopicSettings()
            await create_all_topics(kafka, topics, self.config.regions)
            self.start_services(broker.bootstrap_servers, broker.supports_idempotence)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop.set)
            exit_codes: dict[str, int | None] = {}
            sample: dict[str, Any] | None = None
            async with httpx.AsyncClient() as client:
                try:
                    self.console.log(f"starting {len(self.supervisor.processes)} service processes; logs in "
                                     f"{self.out / 'logs'}")
                    await self.wait_ready(client, list(self.supervisor.processes))
                    self.started = time.monotonic()
                    feed_stop = asyncio.Event()
                    trust = ModelTrustSettings(public_keys=[self.model_public_key])
                    gate = ModelGate.for_model("facet-recommender", trust, SYSTEM_MODEL)
                    feed = asyncio.create_task(follow_models(kafka, topics.models, gate, self.on_model, feed_stop))
                    producer = asyncio.create_task(self.produce(client))
                    monitor = asyncio.create_task(self.monitor(client))
                    with Live(self.view(), console=self.console, refresh_per_second=2) as live:
                        while not self.stop.is_set() and self.elapsed() < self.config.duration_s:
                            await asyncio.sleep(0.5)
                            live.update(self.view())
                            if producer.done() and producer.exception():
                                raise producer.exception()  # type: ignore[misc]
                    self.stop.set()
                    await asyncio.gather(producer, monitor, return_exceptions=True)
                    sample = await self._sample_recommendation(client)
                    self.insights = await self._insights_summary(client)
                    feed_stop.set()
                    await feed
                finally:
                    names = list(self.supervisor.processes)
                    order = ["ingest", *[n for n in names if n.startswith("trainer-")], "aggregator", "insights",
                             *[n for n in names if n.startswith("recommender-")]]
                    exit_codes = self.supervisor.stop(order=[n for n in order if n in self.supervisor.processes])
        if self.config.centralized_epochs and self.latest_model is not None:
            self.console.log(f"training a centralized model on the same {self.sent_events:,} events "
                             f"({self.config.centralized_epochs} epochs) to compare with the federated one")
            self.centralized = await asyncio.to_thread(self._compare_centralized)
        return self._write(exit_codes, sample)

    def _compare_centralized(self) -> dict[str, Any]:
        """The last served federated model and a centralized one trained on exactly the events this run
        sent, scored on the same held-out cases: per region and overall (weighted by cases)."""
        assert self.latest_model is not None
        version, parameters = self.latest_model
        snapshot = self.evaluator.snapshot()
        started = time.monotonic()
        model = self.evaluator.train_centralized(self.config.centralized_epochs, seed=self.config.seed)
        seconds = time.monotonic() - started
        federated = self.evaluator.evaluate(parameters, snapshot)
        central = self.evaluator.evaluate_model(model, snapshot)
        return federated_vs_centralized(federated, central, version=version, training_seconds=seconds,
                                        epochs=self.config.centralized_epochs)

    async def _insights_summary(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        """What the insights service says at the end, for the report (its page: ``url``)."""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            response = await client.get(self.url("insights", "/v1/insights"), timeout=10,
                                        headers={"X-API-Key": self.insights_key})
            if response.status_code != 200:
                return {"status": response.status_code}
            return summarize_insights(response.json(), self.url("insights", "/"))
        return None

    async def _sample_recommendation(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        region = self.config.regions[0]
        shopper = next((s for s, h in self.evaluator.history.items() if len(h) >= 2 and s in self.sample_storefronts),
                       None)
        storefront = self.sample_storefronts.get(shopper or "", f"{region}-web")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await client.get(self.url(f"recommender-{region}", "/v1/recommendations"),
                                        params={"shopper": shopper or "nobody", "k": 5}, timeout=5,
                                        headers={"X-API-Key": self.storefront_keys[storefront]})
            return {"status": response.status_code, "body": response.json()}
        return None

    def _write(self, exit_codes: dict[str, int | None], sample: dict[str, Any] | None) -> Path:
        final = self.timeline[-1] if self.timeline else {}
        evaluated = [p for p in self.timeline if p.get("regions")]
        contributed = sorted(self.status.get("regions", {}))
        report = {
            "config": json.loads(self.config.model_dump_json()),
            "model": SYSTEM_MODEL.model_dump(),
            "events_accepted": self.sent_events,
            "events_rejected": self.rejected_events,
            "http_errors": self.http_errors,
            "final": final,
            "first_evaluation": evaluated[0] if evaluated else None,
            "regions_evaluated": contributed,
            "incidents": self.supervisor.incidents,
            "exit_codes": exit_codes,
            "clean_shutdown": all(code == 0 for code in exit_codes.values()),
            "sample_recommendation": sample,
            "insights": self.insights,
            "centralized_comparison": self.centralized,
            "freshness": {"by_region": final.get("freshness_by_region", {}),
                          "measures": "seconds from an event's acceptance at ingest to the first broadcast model "
                                      "whose training included it (as its region's trainers saw the broadcast)"},
            "launches": self.evaluator.launches.summary(),
            "privacy": {
                "enabled": self.config.privacy,
                "unit": "shopper",
                "epsilon_spent_by_region": final.get("dp_epsilon_spent_by_region", {}),
                "epsilon_budget_by_region": final.get("dp_epsilon_budget_by_region", {}),
                "delta": self.config.trainer_privacy().delta,
                "period_seconds": self.config.trainer_privacy().period_seconds,
                "steps_per_period": self.config.trainer_privacy().steps_per_period,
                "covers": "a shopper's events in one region, per day, against the aggregator and everyone "
                          "downstream (models, recommendations, insights)",
                "does_not_cover": "the regional trainer itself (it sees raw events); no secure aggregation",
            },
            "timeline": self.timeline,
        }
        paths = write_report(self.out, report)
        comparison = self.centralized
        if comparison is not None and comparison["overall"]["ratio"] is not None:
            self.console.log(
                f"federated / centralized NDCG@10 on the same events: {comparison['overall']['ratio']:.3f} "
                f"({comparison['overall']['federated']:.3f} / {comparison['overall']['centralized']:.3f}); per "
                "region " + ", ".join(f"{r} {v['ratio']:.2f}" for r, v in sorted(comparison["regions"].items())
                                      if v["ratio"] is not None))
        launches = report["launches"]
        if launches["launch_steps_scored"]:
            self.console.log(
                f"launches: {launches['launched_items']} items launched; served HR@10 on steps to them "
                f"{launches['hr10_launched']:.3f} vs warm items {launches['hr10_warm'] or 0:.3f}; warm after "
                f"{launches['events_to_warm']} events / {launches['seconds_to_warm']} s (None: not within the run)")
        return paths["json"]


def freshness_by_region(trainers: Scrape) -> dict[str, dict[str, float]]:
    """p50 and p95 of event freshness per region, from the trainers' histograms (replicas summed)."""
    result: dict[str, dict[str, float]] = {}
    for region, buckets in trainers.histograms(names.TRAINER_EVENT_FRESHNESS, "region").items():
        p50, p95 = histogram_quantile(buckets, 0.5), histogram_quantile(buckets, 0.95)
        if p50 is not None and p95 is not None:
            result[region] = {"p50": p50, "p95": p95, "events": buckets[-1][1]}
    return result


async def run_system(config: SystemConfig, console: Console | None = None) -> Path:
    console = console or Console()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return await SystemRun(config, console).run()
