"""The insights API and page: thin routes over :class:`InsightsState` (no ``from __future__ import
annotations``: FastAPI resolves the local dependencies in the route signatures at definition time).

A person reads the page (``/``) after signing in once with their key (kept in an HttpOnly cookie); tools
send the key as a header, like every other Facet API. Both need the ``insights:read`` scope."""


from typing import Annotated

from facet.contracts import ProductRecord
from facet.insights.views import InsightsOverview, OpportunitiesView, RegionInsights, SimilarityView
from facet.service.announcements import AnnouncementGate, CatalogueFull
from facet.service.auth import ApiClient, Scope
from facet.service.health import Health
from facet.service.http import add_probe_routes
from facet_insights.metrics import ITEMS_REFUSED, REQUESTS
from facet_insights.page import render_login, render_page
from facet_insights.settings import InsightsSettings
from facet_insights.state import InsightsState
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

COOKIE = "facet_insights_key"


class SignIn(BaseModel):
    key: str = Field(min_length=1, max_length=512)


class VersionView(BaseModel):
    model_version: int | None
    items: int


def create_app(settings: InsightsSettings, state: InsightsState, health: Health) -> FastAPI:
    app = FastAPI(title="Facet insights", version="1", **settings.fastapi_options())
    add_probe_routes(app, health)
    keys = settings.keyring()
    reader = Depends(keys.dependency(Scope.INSIGHTS_READ, cookie=COOKIE))
    writer = Depends(keys.dependency(Scope.CATALOGUE_WRITE))
    announcements = AnnouncementGate(settings.item_announcements_per_minute, ITEMS_REFUSED)

    def overview(view: str) -> InsightsOverview:
        REQUESTS.labels(view).inc()
        try:
            return state.overview()
        except LookupError as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "5"}) from error

    def known_region(region: str) -> str:
        if region not in state.regions:
            raise HTTPException(404, f"no insights for region {region[:32]!r}; known: {', '.join(state.regions)}")
        return region

    @app.get("/v1/insights", response_model=InsightsOverview, tags=["insights"], responses={503: {}},
             summary="Every figure of the newest model version")
    async def everything(_: Annotated[ApiClient, reader]) -> InsightsOverview:
        return overview("overview")

    @app.get("/v1/insights/version", response_model=VersionView, tags=["insights"],
             summary="The model version the figures describe (the page polls it)")
    async def version(_: Annotated[ApiClient, reader]) -> VersionView:
        latest = state.history.latest
        return VersionView(model_version=latest.version if latest else None, items=len(state.products))

    @app.get("/v1/insights/regions/{region}", response_model=RegionInsights, tags=["insights"],
             responses={404: {}, 503: {}}, summary="One region's lifts by attribute and what is rising there")
    async def region(region: str, _: Annotated[ApiClient, reader]) -> RegionInsights:
        known_region(region)
        return next(r for r in overview("region").region_insights if r.region == region)

    @app.get("/v1/insights/similarity", response_model=SimilarityView, tags=["insights"], responses={503: {}},
             summary="Region-by-region taste similarity")
    async def similarity(_: Annotated[ApiClient, reader]) -> SimilarityView:
        return overview("similarity").similarity

    @app.get("/v1/insights/opportunities", response_model=OpportunitiesView, tags=["insights"],
             responses={404: {}, 422: {}, 503: {}}, summary="Pieces strong in one region to offer in another")
    async def opportunities(
        source: Annotated[str, Query(max_length=32)],
        target: Annotated[str, Query(max_length=32)],
        _: Annotated[ApiClient, reader],
        k: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> OpportunitiesView:
        known_region(source)
        known_region(target)
        if source == target:
            raise HTTPException(422, "source and target must differ")
        overview("opportunities")
        return state.builder().opportunities(source, target, k)

    @app.post("/v1/items", status_code=201, tags=["catalogue"], responses={409: {}, 429: {}},
              summary="Announce a product (product data only)")
    async def announce(item: ProductRecord, client: Annotated[ApiClient, writer]) -> dict[str, object]:
        announcements.admit(client)
        try:
            position = state.add_product(item)
        except CatalogueFull as full:
            raise announcements.full(full) from full
        return {"item_id": item.item_id, "catalogue_size": len(state.products), "position": position}

    # ---- the page -----------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, tags=["page"], summary="The insights page (sign-in first)")
    async def page(request: Request) -> Response:
        key = request.cookies.get(COOKIE) or request.headers.get("x-api-key")
        client = keys.authenticate(key) if key else None
        if client is None or Scope.INSIGHTS_READ not in client.scopes:
            return HTMLResponse(render_login(), status_code=401)
        REQUESTS.labels("page").inc()
        try:
            current = state.overview()
        except LookupError:
            return HTMLResponse(render_page(None, state.regions), headers={"Cache-Control": "no-store"})
        return HTMLResponse(render_page(current, state.regions), headers={"Cache-Control": "no-store"})

    @app.post("/v1/session", tags=["page"], responses={401: {}}, summary="Sign the page in with a key")
    async def sign_in(body: SignIn) -> JSONResponse:
        client = keys.authenticate(body.key)
        if client is None or Scope.INSIGHTS_READ not in client.scopes:
            raise HTTPException(401, "this key may not read insights")
        response = JSONResponse({"signed_in": client.name})
        response.set_cookie(COOKIE, body.key, httponly=True, samesite="strict", secure=settings.secure_cookie,
                            max_age=12 * 3600)
        return response

    @app.delete("/v1/session", tags=["page"], summary="Sign the page out")
    async def sign_out() -> JSONResponse:
        response = JSONResponse({"signed_in": None})
        response.delete_cookie(COOKIE)
        return response

    return app
