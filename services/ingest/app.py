"""The ingest HTTP API: thin routes; validation per event; Kafka behind the publisher."""


import time
from typing import Annotated, Any

from facet.contracts import BehaviourEvent
from facet.service.auth import ApiClient, Scope
from facet.service.health import Health
from facet.service.http import add_probe_routes
from facet.wire import summarize_validation_error
from facet_ingest import metrics as m
from facet_ingest.parsing import BodyBudget, BodyRejected, parse_body
from facet_ingest.publisher import BrokerUnreachable, EventPublisher, Overloaded
from facet_ingest.settings import IngestSettings
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

#: Rejection reasons as metric labels: a fixed set, whatever field names a caller invents.
_EVENT_FIELDS = frozenset(BehaviourEvent.model_fields)


class EventBatch(BaseModel):
    """A batch of events; each is validated on its own so one bad event never sinks the rest."""

    events: list[dict[str, Any]] = Field(max_length=100_000)


class Rejection(BaseModel):
    index: int
    reason: str


class IngestResult(BaseModel):
    accepted: int
    rejected: int
    errors: list[Rejection]


def rejection_label(error: ValidationError) -> str:
    """The first failing field, if it is one of the contract's; ``unknown_field`` or ``invalid`` otherwise."""
    first = error.errors()[0] if error.error_count() else None
    if first is None:
        return "invalid"
    if first["type"] == "extra_forbidden":
        return "unknown_field"
    location = str(first["loc"][0]) if first["loc"] else ""
    return location if location in _EVENT_FIELDS else "invalid"


def create_app(settings: IngestSettings, publisher: EventPublisher, health: Health) -> FastAPI:
    app = FastAPI(title="Facet ingest", version="1", **settings.fastapi_options(),
                  description="Storefronts send shopper behaviour; each region's events stay in its topics.")
    add_probe_routes(app, health)
    allowed_regions = set(settings.regions)
    writer = Depends(settings.keyring().dependency(Scope.EVENTS_WRITE))
    budget = BodyBudget(max_events=settings.max_events_per_request)

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=IngestResult,
        tags=["events"],
        summary="Send a batch of shopper events (JSON or msgpack)",
        responses={400: {}, 401: {}, 403: {}, 413: {}, 415: {}, 429: {}, 503: {}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": EventBatch.model_json_schema()},
            "application/msgpack": {"schema": EventBatch.model_json_schema()},
        }}},
    )
    async def post_events(request: Request, client: Annotated[ApiClient, writer]) -> JSONResponse:
        started = time.perf_counter()
        try:
            result = await _ingest(request, client)
            m.REQUESTS.labels("202").inc()
            return JSONResponse(result.model_dump(), status_code=202)
        except HTTPException as error:
            m.REQUESTS.labels(str(error.status_code)).inc()
            raise
        finally:
            m.REQUEST_SECONDS.observe(time.perf_counter() - started)

    async def _ingest(request: Request, client: ApiClient) -> IngestResult:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise HTTPException(413, f"body exceeds {settings.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                raise HTTPException(413, f"body exceeds {settings.max_body_bytes} bytes")
        try:
            raw = parse_body(bytes(body), request.headers.get("content-type", "application/json"), budget)
        except BodyRejected as rejected:
            raise HTTPException(rejected.status, rejected.detail) from rejected
        events_raw = raw.get("events") if isinstance(raw, dict) else None
        if not isinstance(events_raw, list):
            raise HTTPException(400, "body must be an object with an 'events' list")
        if len(events_raw) > settings.max_events_per_request:
            raise HTTPException(413, f"at most {settings.max_events_per_request} events per request")
        context = {"time_window": settings.time_window()}
        accepted: list[BehaviourEvent] = []
        errors: list[Rejection] = []
        for index, candidate in enumerate(events_raw):
            reason, label = None, None
            try:
                event = BehaviourEvent.model_validate(candidate, context=context)
                if event.region not in allowed_regions:
                    reason, label = f"region: unknown region {event.region!r}", "region"
                elif event.storefront != client.storefront:
                    reason, label = f"storefront: this key writes as {client.storefront!r} only", "storefront"
                else:
                    accepted.append(event)
            except ValidationError as error:
                reason, label = summarize_validation_error(error), rejection_label(error)
            if reason is not None:
                errors.append(Rejection(index=index, reason=reason[:500]))
                m.EVENTS_REJECTED.labels(label or "invalid").inc()
        if accepted:
            try:
                await publisher.publish(accepted)
            except Overloaded as error:
                raise HTTPException(429, str(error), headers={"Retry-After": str(settings.retry_after_s)}) from error
            except BrokerUnreachable as error:
                raise HTTPException(503, str(error), headers={"Retry-After": str(settings.retry_after_s)}) from error
            except Exception as error:  # anything else the client library raises: still "try again", never a 500
                raise HTTPException(503, f"Kafka did not accept the batch: {type(error).__name__}",
                                    headers={"Retry-After": str(settings.retry_after_s)}) from error
        return IngestResult(accepted=len(accepted), rejected=len(errors), errors=errors)

    return app
