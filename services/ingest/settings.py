"""Ingest gateway settings (env prefix FACET_INGEST_)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from facet.config import DEFAULT_REGIONS, validate_region
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACET_INGEST_", extra="ignore")

    regions: tuple[str, ...] = DEFAULT_REGIONS
    #: Storefront → sha256 hex of its API key, as JSON (keys are never stored in clear).
    api_key_hashes: SecretStr | None = None
    api_key_hashes_file: Path | None = None
    max_events_per_request: int = Field(default=1_000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: Events waiting for Kafka acks before new requests get 429 (backpressure, never a silent drop).
    max_in_flight_events: int = Field(default=20_000, ge=1)
    send_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: int = Field(default=2, ge=1)
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_region(r) for r in value)

    @model_validator(mode="after")
    def _keys(self) -> IngestSettings:
        if self.api_key_hashes is None and self.api_key_hashes_file is None:
            raise ValueError("set api_key_hashes or api_key_hashes_file: the gateway never runs open")
        return self

    def key_hashes(self) -> dict[str, str]:
        """sha256 hex → storefront."""
        raw = self.api_key_hashes_file.read_text() if self.api_key_hashes_file else "{}"
        if self.api_key_hashes is not None and self.api_key_hashes_file is None:
            raw = self.api_key_hashes.get_secret_value()
        return {digest.lower(): storefront for storefront, digest in json.loads(raw).items()}
