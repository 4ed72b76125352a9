"""The insights service live: signed models over Kafka, a product feed, and its page in a real headless
Chromium whose charts must show the figures the API returns. The screenshot is kept in reports/."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from facet import wire
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import RegionalStatistics
from facet.insights.releases import InterestWindow, StatisticsSettings, release
from facet.kafka.admin import create_all_topics
from facet.kafka.clients import make_producer
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_lab.launcher import ServiceProcess
from facet_lab.system.scrape import scrape

from tests.helpers import MODEL_SIGNER, TINY_MODEL, api_keys_env, kafka_env, model_env, signed_model, trust_env

pytestmark = pytest.mark.integration
READER = "merchandiser-key"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parents[2] / "reports" / "insights-page.png"


def _feed(path: Path) -> Path:
    catalogue = JewelryWorkload(WorkloadConfig(sessions=1, initial_items=60)).catalogue
    lines = [f'{{"item_id": "{item}", "attributes": {catalogue.attributes(i).model_dump_json(exclude_none=True)}, '
             f'"price": {catalogue.price_usd[i]}, "currency": "USD"}}' for i, item in enumerate(catalogue.item_ids)]
    path.write_text("\n".join([*lines, "{broken line"]) + "\n")
    return path


def _statistics(regions: tuple[str, ...]) -> list[RegionalStatistics]:
    """Each region's release over a workload sharing the feed's catalogue, as the aggregator forwards it."""
    settings = StatisticsSettings()
    space = settings.space(TINY_MODEL.id_buckets)
    windows = {r: InterestWindow(settings, space, TINY_MODEL.feature_space().item_bucket) for r in regions}
    for event in JewelryWorkload(WorkloadConfig(sessions=600, initial_items=60, regions=regions)).events():
        windows[event.region].add(event)
    rng = np.random.default_rng(1)
    return [MODEL_SIGNER.sign_statistics(RegionalStatistics(
        region=r, trainer_id=f"trainer-{r}", update_id=f"u-{r}",
        counts=release(windows[r].close(), settings, space, rng))) for r in regions]


def _read_page(url: str, key: str) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1700, "height": 1400})
            page.goto(url)
            assert page.locator("#lift-heatmap").count() == 0, "figures shown before signing in"
            page.fill("#key", key)
            page.click("button")
            page.wait_for_selector("#lift-heatmap g.cell", timeout=15_000)
            cells = page.eval_on_selector_all("#lift-heatmap g.cell", """els => els.map(e => ({
                region: e.dataset.region, field: e.dataset.field, value: e.dataset.value,
                lift: parseFloat(e.dataset.lift), shown: e.querySelector('text').textContent,
                width: e.querySelector('rect').getBoundingClientRect().width}))""")
            similarity = page.eval_on_selector_all("#similarity g.sim", """els => els.map(e => ({
                a: e.dataset.a, b: e.dataset.b, value: parseFloat(e.dataset.similarity),
                shown: e.querySelector('text').textContent}))""")
            version = page.get_attribute("#provenance", "data-version")
            provenance = page.inner_text("#provenance")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            return {"cells": cells, "similarity": similarity, "version": version, "provenance": provenance}
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
async def test_the_page_draws_what_the_api_says_for_the_live_model(
    kafka_settings: KafkaSettings, topic_settings: TopicSettings, tmp_path: Path
) -> None:
    await create_all_topics(kafka_settings, topic_settings, ["us"])
    producer = make_producer(kafka_settings, kafka_settings.events_servers())
    await producer.start()
    for version in (1, 2):
        await producer.send_and_wait(topic_settings.models, wire.encode(signed_model(version)),
                                     key=b"facet-recommender")
    keys = api_keys_env("FACET_INSIGHTS_", {"merch": (READER, None, ["insights:read"])})
    service = ServiceProcess(["insights-service"],
                             {**kafka_env(kafka_settings, topic_settings), **model_env("FACET_INSIGHTS_"),
                              **trust_env("FACET_INSIGHTS_"), **keys, "FACET_INSIGHTS_SECURE_COOKIE": "false",
                              "FACET_INSIGHTS_CATALOGUE_FILE": str(_feed(tmp_path / "products.jsonl"))},
                             tmp_path, "insights").start()
    try:
        await asyncio.to_thread(service.wait_healthy, 60.0, "/readyz")
        async with httpx.AsyncClient(base_url=service.url(""), headers={"X-API-Key": READER}) as client:
            for _ in range(50):  # both versions are on the topic; wait until the newest is built
                api = (await client.get("/v1/insights")).json()
                if api["provenance"]["model_version"] == 2:
                    break
                await asyncio.sleep(0.2)
            assert api["provenance"]["model_version"] == 2 and api["items"] == 60  # the broken line was refused
            assert api["provenance"]["statistics"] is None  # no region has released counts yet
            releases = _statistics(TINY_MODEL.regions)
            forged = releases[0].model_copy(update={"update_id": "forged"})  # signature no longer matches
            for record in [forged, *releases, releases[1]]:  # and one repeat
                await producer.send_and_wait(topic_settings.statistics, wire.encode(record), key=b"x")
            for _ in range(100):
                api = (await client.get("/v1/insights")).json()
                if api["provenance"]["statistics"] is not None:
                    break
                await asyncio.sleep(0.2)
            counted = api["provenance"]["statistics"]
            assert counted is not None and counted["releases"] == len(TINY_MODEL.regions)
            assert counted["epsilon_per_period"] == 2.0 and api["provenance"]["epsilon_spent"] == 2.0
            sources = {f["field"]: f["source"] for f in api["region_insights"][0]["lifts"]}
            assert sources == {"metal": "counts", "gem": "counts", "category": "counts", "color": "counts",
                               "price_band": "model"}
            scraped = await scrape(client, service.url("/metrics"))
            refused = scraped.by_label("facet_insights_statistics_rejected_total", "reason")
            assert refused.get("bad_signature") == 1 and refused.get("duplicate") == 1
            page = await asyncio.to_thread(_read_page, service.url("/"), READER)
        assert page["version"] == "2" and "noisy interest counts" in str(page["provenance"])
        expected = {(r["region"], f["field"], c["value"]): c["lift"]
                    for r in api["region_insights"] for f in r["lifts"] for c in f["cells"]}
        drawn = {(c["region"], c["field"], c["value"]): c for c in page["cells"]}  # type: ignore[union-attr]
        assert set(drawn) == set(expected)
        for key, lift in expected.items():
            assert drawn[key]["lift"] == pytest.approx(lift, rel=1e-5)
            assert drawn[key]["shown"] == f"{lift:.2f}" and drawn[key]["width"] > 10  # drawn, visibly
        matrix = api["similarity"]
        shown = {(s["a"], s["b"]): s for s in page["similarity"]}  # type: ignore[union-attr]
        for i, a in enumerate(matrix["regions"]):
            for j, b in enumerate(matrix["regions"]):
                assert shown[(a, b)]["value"] == pytest.approx(matrix["matrix"][i][j], abs=1e-4)
        assert SCREENSHOT.stat().st_size > 10_000
        assert service.terminate() == 0
    finally:
        service.stop_quietly()
        await producer.stop()
