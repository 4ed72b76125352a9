"""Aggregator settings (env prefix FACET_AGGREGATOR_)."""

from __future__ import annotations

import json
from pathlib import Path

from facet.compression.codecs import CodecSpec
from facet.config import validate_region
from facet.errors import ConfigurationError
from facet.federation.model_signing import ModelSigner
from facet.federation.server import AggregationPolicy
from facet.model.network import ModelConfig
from facet.service.http import HttpServing
from facet.service.model_feed import ModelTrustSettings
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict


class AggregatorSettings(HttpServing):
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
    #: Artifacts kept on disk (older ones are deleted: consumers only ever want the newest).
    artifacts_kept: int = Field(default=5, ge=1)
    #: Trainer id → HMAC key, or → {"key": ..., "region": ...} to bind the id to a region explicitly
    #: (otherwise the region its id names, trainer-<region>), as JSON from a mounted secret.
    trainer_keys: SecretStr | None = None
    trainer_keys_file: Path | None = None
    #: Ed25519 private key (64 hex characters) that signs every broadcast; consumers hold its public key.
    model_signing_key: SecretStr | None = None
    model_signing_key_file: Path | None = None
    http_port: int = Field(default=8082, ge=0, le=65535)
    max_poll_records: int = Field(default=64, ge=1)
    #: Run as the zone tier of this zone (``facet aggregator --zone Z``): aggregate the updates of the zone's
    #: regions from its own topic and forward one signed update per FedBuff step to the global aggregator,
    #: instead of broadcasting models. Its checkpoint directory must be its own.
    zone: str | None = None
    #: The zone's HMAC key: the global aggregator knows it as trainer ``zone-<zone>``.
    zone_signing_key: SecretStr | None = None
    zone_codec: str = "rows+int8+zstd"
    #: Whom a zone trusts for global broadcasts (it follows them to measure staleness).
    model_trust: ModelTrustSettings = Field(default_factory=ModelTrustSettings)
    #: How long a zone waits to see the global version an authentic update is based on before refusing it.
    zone_catch_up_s: float = Field(default=5.0, ge=0, le=60)
    #: A zone steps over a partly filled buffer once its oldest update has waited this long, so a zone whose
    #: regions report rarely does not hold their updates back (0: only full buffers are stepped).
    #: 15 s (1.5 of the trainers' 10 s pacing periods): in `facet bench federation --zones` the zone tier's
    #: final NDCG@10 over flat's rose from 0.968 at 30 s to 0.9898 (mean of three seeds; retail 1.005), for
    #: 0.30 of flat's cross-zone bytes instead of 0.25.
    zone_max_wait_s: float = Field(default=15.0, ge=0, le=3600)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else validate_region(value)

    @model_validator(mode="after")
    def _keys_when_signed(self) -> AggregatorSettings:
        if self.policy.require_signatures and self.trainer_keys is None and self.trainer_keys_file is None:
            raise ValueError("require_signatures needs trainer_keys or trainer_keys_file (refusing unsigned mode "
                             "by default; set policy.require_signatures=false only for experiments)")
        if self.zone is not None:
            if self.zone_signing_key is None:
                raise ValueError("a zone tier needs zone_signing_key: the global aggregator verifies its updates")
            if self.policy.mode != "fedbuff":
                raise ValueError("a zone tier aggregates with FedBuff (policy.mode=fedbuff)")
            self.model_trust.check()
            CodecSpec.parse(self.zone_codec)
            return self  # a zone signs updates, never models
        if self.model_signing_key is None and self.model_signing_key_file is None:
            raise ValueError("model_signing_key (or model_signing_key_file) is required: every broadcast is signed "
                             "(`facet keys model` makes a key pair)")
        return self

    def _trainer_document(self) -> dict[str, object]:
        raw = "{}"
        if self.trainer_keys_file is not None:
            raw = self.trainer_keys_file.read_text()
        elif self.trainer_keys is not None:
            raw = self.trainer_keys.get_secret_value()
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise ConfigurationError("trainer_keys must be a JSON object of trainer id → key")
        return document

    def keys(self) -> dict[str, bytes]:
        keys = {}
        for trainer, value in self._trainer_document().items():
            key = value.get("key") if isinstance(value, dict) else value
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"trainer {trainer!r} has no key")
            keys[trainer] = key.encode()
        return keys

    def trainer_regions(self) -> dict[str, str]:
        """Explicit bindings; ids without one are bound to the region their id names."""
        return {trainer: validate_region(str(value["region"])) for trainer, value in self._trainer_document().items()
                if isinstance(value, dict) and "region" in value}

    @property
    def consumer_group(self) -> str:
        """A zone tier reads its own topic in its own group."""
        return self.group_id if self.zone is None else f"{self.group_id}-zone-{self.zone}"

    def signer(self) -> ModelSigner:
        if self.model_signing_key_file is not None:
            return ModelSigner(self.model_signing_key_file.read_text().strip())
        assert self.model_signing_key is not None  # the validator guarantees one source
        return ModelSigner(self.model_signing_key.get_secret_value())
