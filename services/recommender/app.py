"""The recommendation API: thin routes over :class:`RegionalState`."""


import time
from typing import Annotated

from facet.contracts import ProductRecord, ShortId
from facet.service import metric_names as names
from facet.service.announcements import AnnouncementGate, CatalogueFull
from facet.service.auth import ApiClient, Scope
from facet.service.health import Health
from facet.service.http import add_probe_routes
from facet_recommender.settings import RecommenderSettings
from facet_recommender.state import RegionalState
from fastapi import Depends, FastAPI, HTTPException, Query
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, Field

ONLINE_NDCG = Gauge(names.RECOMMENDER_ONLINE_NDCG10,
                    "Prequential NDCG@10: each sampled event's item ranked by the serving model before it is learned",
                    ["region"])
MODEL_VERSION = Gauge(names.RECOMMENDER_MODEL_VERSION, "Global model version being served", ["region"])
REQUESTS = Counter(names.RECOMMENDER_REQUESTS_TOTAL, "Recommendation requests", ["strategy"])
EVENTS_REJECTED = Counter(names.RECOMMENDER_EVENTS_REJECTED_TOTAL, "Region events not learned from, by reason",
                          ["reason"])
ITEMS_REFUSED = Counter(names.RECOMMENDER_ITEMS_REFUSED_TOTAL, "Item announcements refused", ["reason"])
LATENCY = Histogram(names.RECOMMENDER_REQUEST_SECONDS, "Recommendation latency",
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))


class RecommendedItem(BaseModel):
    item_id: str
    score: float


class Recommendations(BaseModel):
    region: str
    shopper: str | None
    model_version: int
    strategy: str
    items: list[RecommendedItem]


class SessionRequest(BaseModel):
    """An anonymous session: the items viewed so far, oldest first, and optional context."""

    recent_items: list[ShortId] = Field(default_factory=list, max_length=200)
    k: int = Field(default=10, ge=1, le=1000)
    exclude: list[ShortId] = Field(default_factory=list, max_length=1000)


def create_app(settings: RecommenderSettings, state: RegionalState, health: Health) -> FastAPI:
    app = FastAPI(title=f"Facet recommender ({settings.region})", version="1", **settings.fastapi_options())
    add_probe_routes(app, health)
    keys = settings.keyring()
    reader = Depends(keys.dependency(Scope.RECOMMENDATIONS_READ))
    writer = Depends(keys.dependency(Scope.CATALOGUE_WRITE))
    announcements = AnnouncementGate(settings.item_announcements_per_minute, ITEMS_REFUSED)

    def respond(shopper: str | None, history: list[int], k: int, exclude: set[int]) -> Recommendations:
        started = time.perf_counter()
        if k > settings.max_k:
            raise HTTPException(422, f"k must be at most {settings.max_k}")
        try:
            serving, ranked, strategy = state.recommend(history, k, exclude, settings.trend_weight)
        except LookupError as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "2"}) from error
        REQUESTS.labels(strategy).inc()
        LATENCY.observe(time.perf_counter() - started)
        return Recommendations(region=settings.region, shopper=shopper, model_version=serving.version,
                               strategy=strategy, items=[RecommendedItem(item_id=i, score=s) for i, s in ranked])

    @app.get("/v1/recommendations", response_model=Recommendations, tags=["recommendations"],
             responses={503: {}}, summary="Top-K for a known shopper (items already bought are left out)")
    async def for_shopper(
        shopper: Annotated[str, Query(min_length=1, max_length=128)],
        client: Annotated[ApiClient, reader],
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
    ) -> Recommendations:
        history, purchases = state.shopper_view(shopper, client.storefront)
        return respond(shopper, history, k, purchases)

    @app.post("/v1/recommendations", response_model=Recommendations, tags=["recommendations"],
              responses={503: {}}, summary="Top-K for an anonymous session's recent items")
    async def for_session(request: SessionRequest, client: Annotated[ApiClient, reader]) -> Recommendations:
        index = state.catalogue.index
        history = [index[i] for i in request.recent_items if i in index]
        exclude = {index[i] for i in request.exclude if i in index}
        return respond(None, history, request.k, exclude)

    @app.post("/v1/items", status_code=201, tags=["catalogue"], summary="Announce a new item with attributes",
              responses={409: {}, 429: {}})
    async def announce(item: ProductRecord, client: Annotated[ApiClient, writer]) -> dict[str, object]:
        announcements.admit(client)
        try:
            position = state.announce_item(item.item_id, item.attributes, item.price, item.currency)
        except CatalogueFull as full:
            raise announcements.full(full) from full
        return {"item_id": item.item_id, "catalogue_size": len(state.catalogue), "position": position}

    return app
