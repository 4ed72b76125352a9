"""Aggregator settings (env prefix FACET_AGGREGATOR_)."""

from __future__ import annotations

import json
from pathlib import Path

from facet.federation.server import AggregationPolicy
from facet.model.network import ModelConfig
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AggregatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACET_AGGREGATOR_", env_nested_delimiter="__", extra="ignore")

    model_name: str = "facet-recommender"
    group_id: str = "facet-aggregator"
    policy: AggregationPolicy = Field(default_factory=AggregationPolicy)
    model: ModelConfig = Field(default_factory=ModelConfig)
    seed: int = 0
    #: Start version 0 from this safetensors file instead of a seeded initialisation.
    initial_parameters: Path | None = None
    checkpoint_dir: Path = Path("state/aggregator")
    checkpoint_every_versions: int = Field(default=5, ge=1)
    checkpoints_kept: int = Field(default=3, ge=1)
    #: Commit progress that made no new version (rejections, a partly filled buffer) at most this often.
    checkpoint_interval_s: float = Field(default=5.0, ge=0)
    #: Broadcast throttle: a new global model at most this often, and at least every N versions.
    broadcast_interval_s: float = Field(default=2.0, ge=0)
    broadcast_every_versions: int = Field(default=10, ge=1)
    #: Larger models go out as a pointer to an artifact served by this aggregator.
    inline_model_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    artifact_base_url: str | None = None
    #: Trainer id → HMAC key, as JSON (from a mounted secret in production).
    trainer_keys: SecretStr | None = None
    trainer_keys_file: Path | None = None
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8082, ge=0, le=65535)
    max_poll_records: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _keys_when_signed(self) -> AggregatorSettings:
        if self.policy.require_signatures and self.trainer_keys is None and self.trainer_keys_file is None:
            raise ValueError("require_signatures needs trainer_keys or trainer_keys_file (refusing unsigned mode "
                             "by default; set policy.require_signatures=false only for experiments)")
        return self

    def keys(self) -> dict[str, bytes]:
        raw = "{}"
        if self.trainer_keys_file is not None:
            raw = self.trainer_keys_file.read_text()
        elif self.trainer_keys is not None:
            raw = self.trainer_keys.get_secret_value()
        return {trainer: key.encode() for trainer, key in json.loads(raw).items()}
