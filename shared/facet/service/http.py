"""Serve a FastAPI app inside a service's own event loop, with the standard probe and metrics routes."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
from pydantic_settings import BaseSettings

from facet.service.health import Health


class HttpServing(BaseSettings):
    """HTTP settings every service shares (each service's settings class inherits them)."""

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: Requests handled at once; beyond it uvicorn answers 503 instead of queueing without bound.
    http_limit_concurrency: int = Field(default=256, ge=1, le=100_000)
    #: Serve /docs and /openapi.json (off in production: they map the attack surface for free).
    docs_enabled: bool = False

    def fastapi_options(self) -> dict[str, object]:
        if self.docs_enabled:
            return {}
        return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def add_probe_routes(app: FastAPI, health: Health) -> None:
    @app.get("/healthz", tags=["ops"], summary="Liveness: the consume loop is turning")
    async def healthz() -> JSONResponse:
        ok, detail = health.alive()
        return JSONResponse({"status": "ok" if ok else "stalled", **detail}, status_code=200 if ok else 503)

    @app.get("/readyz", tags=["ops"], summary="Readiness: everything needed to serve is in place")
    async def readyz() -> JSONResponse:
        ok, detail = health.ready()
        return JSONResponse({"status": "ready" if ok else "not_ready", **detail}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def serve(app: FastAPI, host: str, port: int, stop: asyncio.Event, limit_concurrency: int | None = None) -> None:
    """Run uvicorn until ``stop`` is set; signals stay with the service (it drains Kafka first)."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
                            limit_concurrency=limit_concurrency)
    server = uvicorn.Server(config)
    # uvicorn would take SIGTERM for itself and stop serving probes first; the service owns the signals
    # and stops HTTP last, after Kafka work is drained.
    setattr(server, "capture_signals", contextlib.nullcontext)  # noqa: B010
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task
