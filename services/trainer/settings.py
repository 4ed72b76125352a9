"""Trainer settings (env prefix FACET_TRAINER_)."""

from __future__ import annotations

import os
import socket

from facet.compression.codecs import CodecSpec
from facet.config import validate_region
from facet.insights.releases import StatisticsSettings
from facet.model.network import ModelConfig
from facet.privacy.settings import PrivacySettings
from facet.service.http import HttpServing
from facet.service.model_feed import ModelTrustSettings
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict


class TrainerSettings(HttpServing):
    model_config = SettingsConfigDict(env_prefix="FACET_TRAINER_", env_nested_delimiter="__", extra="ignore")

    region: str
    #: Identity the aggregator knows (one HMAC key per identity); replicas of a region share it.
    trainer_id: str | None = None
    replica_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    group_id: str | None = None
    model_name: str = "facet-recommender"
    model: ModelConfig = Field(default_factory=ModelConfig)
    codec: str = "rows+int8+zstd"
    #: Adam's rate for non-private training; under DP (on by default) `privacy.lr` is used instead.
    lr: float = Field(default=1e-2, gt=0)
    batch_size: int = Field(default=64, ge=1)
    #: Publish an update every N trained samples or T seconds, whichever comes first.
    update_every_samples: int = Field(default=2_000, ge=1)
    update_every_seconds: float = Field(default=10.0, gt=0)
    #: Memory cap of the training window: shoppers whose recent history is kept (LRU).
    window_max_shoppers: int = Field(default=50_000, ge=10)
    window_max_items: int = Field(default=200_000, ge=10)
    #: Recent examples replayed beside each new batch (0: every event is trained on exactly once).
    replay_examples: int = Field(default=8_192, ge=0, le=1_000_000)
    #: Shopper-level DP-SGD, on by default (``FACET_TRAINER_PRIVACY__ENABLED=false`` for development only).
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    #: Under DP: steps taken per update (fewer when the budget's pacing allows fewer).
    private_steps_per_update: int = Field(default=5, ge=1, le=1_000)
    #: Noisy interest counts for the insights service (a budget of their own), riding on the updates.
    statistics: StatisticsSettings = Field(default_factory=StatisticsSettings)
    signing_key: SecretStr | None = None
    #: The zone tier this region's deltas go to (facet.updates.<zone>.v1) instead of the global updates topic;
    #: statistics releases still go to the global aggregator, alone.
    zone: str | None = None
    model_trust: ModelTrustSettings = Field(default_factory=ModelTrustSettings)
    http_port: int = Field(default=8083, ge=0, le=65535)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return validate_region(value)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else validate_region(value)

    @field_validator("codec")
    @classmethod
    def _codec(cls, value: str) -> str:
        return CodecSpec.parse(value).name

    @model_validator(mode="after")
    def _defaults(self) -> TrainerSettings:
        if self.trainer_id is None:
            self.trainer_id = f"trainer-{self.region}"
        if self.group_id is None:
            self.group_id = f"facet-trainer-{self.region}"
        if self.signing_key is None:
            raise ValueError("signing_key is required: the aggregator rejects unsigned updates")
        self.model_trust.check()
        return self
