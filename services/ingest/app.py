"""The ingest HTTP API: thin routes; validation per event; Kafka behind the publisher."""


import hmac
import json
import time
from typing import Annotated, Any

import msgpack
from facet.contracts import BehaviourEvent
from facet.service.health import Health
from facet.service.http import add_probe_routes
from facet.wire import summarize_validation_error
from facet_ingest import metrics as m
from facet_ingest.publisher import BrokerUnreachable, EventPublisher, Overloaded
from facet_ingest.settings import IngestSettings, hash_api_key
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


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


def create_app(settings: IngestSettings, publisher: EventPublisher, health: Health) -> FastAPI:
    app = FastAPI(title="Facet ingest", version="1",
                  description="Storefronts send shopper behaviour; each region's events stay in its topics.")
    add_probe_routes(app, health)
    key_hashes = settings.key_hashes()
    allowed_regions = set(settings.regions)

    def storefront_of(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> str:
        key = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
        if not key:
            raise HTTPException(401, "missing API key (X-API-Key or Authorization: Bearer)")
        digest = hash_api_key(key)
        for known, storefront in key_hashes.items():
            if hmac.compare_digest(known, digest):
                return storefront
        raise HTTPException(401, "unknown API key")

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=IngestResult,
        tags=["events"],
        summary="Send a batch of shopper events (JSON or msgpack)",
        responses={400: {}, 401: {}, 413: {}, 415: {}, 429: {}, 503: {}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": EventBatch.model_json_schema()},
            "application/msgpack": {"schema": EventBatch.model_json_schema()},
        }}},
    )
    async def post_events(request: Request, storefront: Annotated[str, Depends(storefront_of)]) -> JSONResponse:
        started = time.perf_counter()
        try:
            result = await _ingest(request, storefront)
            m.REQUESTS.labels("202").inc()
            return JSONResponse(result.model_dump(), status_code=202)
        except HTTPException as error:
            m.REQUESTS.labels(str(error.status_code)).inc()
            raise
        finally:
            m.REQUEST_SECONDS.observe(time.perf_counter() - started)

    async def _ingest(request: Request, storefront: str) -> IngestResult:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise HTTPException(413, f"body exceeds {settings.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                raise HTTPException(413, f"body exceeds {settings.max_body_bytes} bytes")
        raw = _parse(bytes(body), request.headers.get("content-type", "application/json"))
        events_raw = raw.get("events") if isinstance(raw, dict) else None
        if not isinstance(events_raw, list):
            raise HTTPException(400, "body must be an object with an 'events' list")
        if len(events_raw) > settings.max_events_per_request:
            raise HTTPException(413, f"at most {settings.max_events_per_request} events per request")
        accepted: list[BehaviourEvent] = []
        errors: list[Rejection] = []
        for index, candidate in enumerate(events_raw):
            reason = None
            try:
                event = BehaviourEvent.model_validate(candidate)
                if event.region not in allowed_regions:
                    reason = f"region: unknown region {event.region!r}"
                else:
                    accepted.append(event)
            except ValidationError as error:
                reason = summarize_validation_error(error)
            if reason is not None:
                errors.append(Rejection(index=index, reason=reason))
                m.EVENTS_REJECTED.labels(reason.split(":", 1)[0][:40]).inc()
        if accepted:
            try:
                await publisher.publish(accepted)
            except Overloaded as error:
                raise HTTPException(429, str(error), headers={"Retry-After": str(settings.retry_after_s)}) from error
            except BrokerUnreachable as error:
                raise HTTPException(503, str(error), headers={"Retry-After": str(settings.retry_after_s)}) from error
        return IngestResult(accepted=len(accepted), rejected=len(errors), errors=errors)

    return app


def _parse(body: bytes, content_type: str) -> object:
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        if media in MSGPACK_TYPES:
            return msgpack.unpackb(body, raw=False, timestamp=3, strict_map_key=True)
        if media in ("application/json", ""):
            return json.loads(body)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise HTTPException(400, f"body is not valid {media or 'JSON'}: {error}") from error
    raise HTTPException(415, f"unsupported content type {media!r}; use JSON or msgpack")
