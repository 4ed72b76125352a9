"""Recommender settings (env prefix FACET_RECOMMENDER_)."""

from __future__ import annotations

from facet.config import validate_region
from facet.model.coldstart import ColdStartPolicy
from facet.model.network import ModelConfig
from facet.service.auth import ApiKeySettings
from facet.service.http import HttpServing
from facet.service.model_feed import ModelTrustSettings
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict


class RecommenderSettings(HttpServing, ApiKeySettings):
    model_config = SettingsConfigDict(env_prefix="FACET_RECOMMENDER_", env_nested_delimiter="__", extra="ignore")

    region: str
    model_name: str = "facet-recommender"
    model: ModelConfig = Field(default_factory=ModelConfig)
    #: Bounded memory: shoppers whose recent history is kept (LRU), and purchases remembered per shopper.
    max_shoppers: int = Field(default=200_000, ge=10)
    max_purchases_per_shopper: int = Field(default=200, ge=1)
    max_items: int = Field(default=500_000, ge=10)
    #: How strongly regional trends shape cold-start lists (0: model only).
    trend_weight: float = Field(default=1.0, ge=0)
    #: Trend counts halve after this many events in the region.
    trend_half_life_events: float = Field(default=20_000, gt=0)
    #: How items the global model has never trained on are ranked (see ``facet eval --cold-start``).
    cold_start: ColdStartPolicy = Field(default_factory=ColdStartPolicy)
    max_k: int = Field(default=100, ge=1, le=1000)
    #: Item announcements (POST /v1/items) per catalogue-writer key per minute.
    item_announcements_per_minute: float = Field(default=600, gt=0)
    model_trust: ModelTrustSettings = Field(default_factory=ModelTrustSettings)
    http_port: int = Field(default=8081, ge=0, le=65535)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return validate_region(value)

    @model_validator(mode="after")
    def _trusted(self) -> RecommenderSettings:
        self.model_trust.check()
        if self.api_keys is None and self.api_keys_file is None:
            raise ValueError("set api_keys or api_keys_file: the recommender never runs open")
        return self
