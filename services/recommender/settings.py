"""Recommender settings (env prefix FACET_RECOMMENDER_)."""

from __future__ import annotations

from facet.config import validate_region
from facet.model.network import ModelConfig
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RecommenderSettings(BaseSettings):
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
    max_k: int = Field(default=100, ge=1, le=1000)
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8081, ge=0, le=65535)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return validate_region(value)
