"""Ingest gateway settings (env prefix FACET_INGEST_)."""

from __future__ import annotations

import json
from datetime import timedelta

from facet.config import DEFAULT_REGIONS, validate_region
from facet.contracts import TimeWindow
from facet.errors import ConfigurationError
from facet.service.auth import ApiClient, ApiKeySettings, KeyRing, Scope, hash_api_key
from facet.service.http import HttpServing
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

__all__ = ["IngestSettings", "hash_api_key"]


class IngestSettings(HttpServing, ApiKeySettings):
    model_config = SettingsConfigDict(env_prefix="FACET_INGEST_", extra="ignore")

    regions: tuple[str, ...] = DEFAULT_REGIONS
    #: Storefront → sha256 hex of its API key (or a list of them, to rotate with an overlap), as JSON: the
    #: compact form of ``api_keys`` for storefronts that only send events. Keys are never stored in clear.
    api_key_hashes: SecretStr | None = None
    api_key_hashes_file: str | None = None
    max_events_per_request: int = Field(default=1_000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: Events older than this (or further in the future than ``max_future_skew_s``) are refused: a
    #: plausibility window around now. Replays of historical data raise it.
    max_event_age_days: float = Field(default=30.0, gt=0, le=36_500)
    max_future_skew_s: float = Field(default=300.0, ge=0, le=86_400)
    #: Events waiting for Kafka acks before new requests get 429 (backpressure, never a silent drop).
    max_in_flight_events: int = Field(default=20_000, ge=1)
    send_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: int = Field(default=2, ge=1)
    http_port: int = Field(default=8080, ge=0, le=65535)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_region(r) for r in value)

    @model_validator(mode="after")
    def _keys(self) -> IngestSettings:
        if (self.api_key_hashes is None and self.api_key_hashes_file is None and self.api_keys is None
                and self.api_keys_file is None):
            raise ValueError("set api_key_hashes or api_keys (or their _file forms): the gateway never runs open")
        return self

    def time_window(self) -> TimeWindow:
        return TimeWindow.around_now(timedelta(days=self.max_event_age_days),
                                     timedelta(seconds=self.max_future_skew_s))

    def keyring(self) -> KeyRing:
        """Clients from ``api_keys`` plus one per storefront of ``api_key_hashes`` (writing events only)."""
        clients: dict[str, ApiClient] = {}
        if self.api_keys is not None or self.api_keys_file is not None:
            clients.update(super().keyring().clients)
        raw = None
        if self.api_key_hashes_file is not None:
            with open(self.api_key_hashes_file) as handle:
                raw = handle.read()
        elif self.api_key_hashes is not None:
            raw = self.api_key_hashes.get_secret_value()
        if raw is not None:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise ConfigurationError("api_key_hashes must be a JSON object of storefront → sha256")
            for storefront, digests in document.items():
                clients[storefront] = ApiClient(key_sha256=digests, storefront=storefront,
                                                scopes=frozenset({Scope.EVENTS_WRITE}))
        return KeyRing(clients)
