"""The insights API and page: keys and scopes, figures that follow the loaded model, bounded catalogue."""

from __future__ import annotations

import json

import httpx
import pytest
from facet.contracts import ItemAttributes, ProductRecord
from facet.insights.report import ReportOptions
from facet.model.network import new_model
from facet.service.health import Health
from facet_insights.app import create_app
from facet_insights.settings import InsightsSettings
from facet_insights.state import InsightsState

from tests.helpers import TINY_MODEL, api_keys_env

READER, WRITER, STOREFRONT = "merch-key", "feed-key", "store-key"


def _client(loaded: bool = True, max_items: int = 60) -> tuple[httpx.AsyncClient, InsightsState]:
    keys = api_keys_env("", {"merch": (READER, None, ["insights:read"]), "feed": (WRITER, None, ["catalogue:write"]),
                             "store": (STOREFRONT, "us-web", ["recommendations:read"])})
    settings = InsightsSettings(api_keys=keys["API_KEYS"], model=TINY_MODEL, secure_cookie=False,
                                model_trust={"allow_unsigned": True}, max_items=max_items)
    state = InsightsState(TINY_MODEL, settings.report_regions(), max_items=max_items, recent_versions=3,
                          options=ReportOptions(top_k=5))
    metals, categories = ("gold", "silver", "platinum"), ("ring", "earring", "pendant", "brooch")
    for i in range(48):
        state.add_product(ProductRecord(item_id=f"sku-{i}", attributes=ItemAttributes(
            metal=metals[i % 3], category=categories[i % 4], gem="pearl" if i % 5 == 0 else "none"),
            price=30.0 * (1 + i % 6), currency="USD"))
    if loaded:
        for version in (1, 2):
            state.load_model(new_model(TINY_MODEL, seed=version).state_dict(), version, 0)
    transport = httpx.ASGITransport(app=create_app(settings, state, Health()))
    return httpx.AsyncClient(transport=transport, base_url="http://insights.test"), state


async def test_every_view_needs_an_insights_key_and_no_other_scope_will_do() -> None:
    client, _ = _client()
    assert (await client.get("/v1/insights")).status_code == 401
    assert (await client.get("/v1/insights", headers={"X-API-Key": STOREFRONT})).status_code == 403
    assert (await client.get("/v1/insights", headers={"X-API-Key": "guess"})).status_code == 401
    assert (await client.get("/", headers={})).status_code == 401  # the sign-in form, not the figures
    assert "lift-heatmap" not in (await client.get("/")).text
    assert (await client.post("/v1/session", json={"key": STOREFRONT})).status_code == 401


async def test_figures_follow_the_loaded_versions_with_their_spread_and_provenance() -> None:
    client, state = _client()
    body = (await client.get("/v1/insights", headers={"X-API-Key": READER})).json()
    assert body["provenance"]["model_version"] == 2 and body["provenance"]["versions_compared"] == 2
    assert body["provenance"]["epsilon_spent"] == 0.0
    assert body["regions"] == list(TINY_MODEL.regions)
    us = next(r for r in body["region_insights"] if r["region"] == "us")
    metal = next(f for f in us["lifts"] if f["field"] == "metal")
    assert {c["value"] for c in metal["cells"]} == {"gold", "silver", "platinum"}
    assert sum(c["share"] for c in metal["cells"]) == pytest.approx(1.0)
    assert any(c["lift_spread"] > 0 for c in metal["cells"])  # two different versions: a real spread
    assert us["rising"]["day"]["since_version"] == 1
    matrix = body["similarity"]["matrix"]
    assert all(abs(matrix[i][i] - 1) < 1e-3 for i in range(len(matrix)))
    pair = (await client.get("/v1/insights/opportunities", params={"source": "us", "target": "jp", "k": 3},
                      headers={"X-API-Key": READER})).json()
    assert pair["source"] == "us" and len(pair["items"]) <= 3
    assert (await client.get("/v1/insights/opportunities", params={"source": "us", "target": "us"},
                      headers={"X-API-Key": READER})).status_code == 422
    assert (await client.get("/v1/insights/regions/mars", headers={"X-API-Key": READER})).status_code == 404
    state.load_model(new_model(TINY_MODEL, seed=3).state_dict(), 3, 0)
    assert (await client.get("/v1/insights/version", headers={"X-API-Key": READER})).json()["model_version"] == 3


async def test_before_any_model_the_api_says_retry_and_the_page_says_why() -> None:
    client, _ = _client(loaded=False)
    response = await client.get("/v1/insights", headers={"X-API-Key": READER})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "No global model" in (await client.get("/", headers={"X-API-Key": READER})).text


async def test_the_page_signs_in_with_an_httponly_cookie_and_draws_the_api_figures() -> None:
    client, _ = _client()
    signed = await client.post("/v1/session", json={"key": READER})
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = await client.get("/")
    assert page.status_code == 200 and 'id="lift-heatmap"' in page.text
    api = (await client.get("/v1/insights")).json()  # the cookie works for the API the page polls, too
    first = api["region_insights"][0]["lifts"][0]["cells"][0]
    assert f'data-lift="{first["lift"]:.6g}"' in page.text
    client.cookies.clear()
    assert (await client.get("/v1/insights")).status_code == 401


async def test_announcements_need_the_catalogue_scope_and_stop_at_the_cap() -> None:
    client, state = _client(max_items=50)
    item = {"item_id": "new-1", "attributes": {"metal": "gold"}, "price": 10.0, "currency": "USD"}
    assert (await client.post("/v1/items", json=item, headers={"X-API-Key": READER})).status_code == 403
    no_currency = {**item, "currency": None}
    assert (await client.post("/v1/items", json=no_currency, headers={"X-API-Key": WRITER})).status_code == 422
    assert (await client.post("/v1/items", json=item, headers={"X-API-Key": WRITER})).status_code == 201
    second = {**item, "item_id": "new-2"}
    assert (await client.post("/v1/items", json=second, headers={"X-API-Key": WRITER})).status_code == 201
    full = await client.post("/v1/items", json={**item, "item_id": "new-3"}, headers={"X-API-Key": WRITER})
    assert full.status_code == 409 and len(state.products) == 50
    assert json.loads(full.text)["detail"].startswith("the catalogue holds")
