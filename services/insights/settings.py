"""Insights settings (env prefix FACET_INSIGHTS_)."""

from __future__ import annotations

from pathlib import Path

from facet.model.network import ModelConfig
from facet.service.auth import ApiKeySettings
from facet.service.http import HttpServing
from facet.service.model_feed import ModelTrustSettings
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict


class InsightsSettings(HttpServing, ApiKeySettings):
    model_config = SettingsConfigDict(env_prefix="FACET_INSIGHTS_", env_nested_delimiter="__", extra="ignore")

    model_name: str = "facet-recommender"
    model: ModelConfig = Field(default_factory=ModelConfig)
    #: Markets to report on (each must be one of the model's own regions); empty: all of the model's.
    regions: tuple[str, ...] = ()
    #: The seller's product feed (JSON lines of item_id, attributes, price, currency): product data, never
    #: behaviour. Items announced later arrive through POST /v1/items.
    catalogue_file: Path | None = None
    #: Bounded memory: items kept, and model versions compared (the newest few, then hourly for a week).
    max_items: int = Field(default=50_000, ge=10)
    recent_versions: int = Field(default=5, ge=1, le=50)
    top_k: int = Field(default=20, ge=1, le=200)
    item_announcements_per_minute: float = Field(default=600, gt=0)
    model_trust: ModelTrustSettings = Field(default_factory=ModelTrustSettings)
    #: Must match the trainers' ``statistics.value_buckets``: releases of another shape are refused.
    statistics_value_buckets: int = Field(default=65_536, ge=16, le=2**21)
    #: Counted figures sum the regions' releases over this many days (more: less noise, slower to turn).
    statistics_window_days: int = Field(default=7, ge=1, le=90)
    #: The page's login cookie is sent only over HTTPS (turn off only for plain-HTTP development).
    secure_cookie: bool = True
    http_port: int = Field(default=8084, ge=0, le=65535)

    @model_validator(mode="after")
    def _trusted(self) -> InsightsSettings:
        self.model_trust.check()
        if self.api_keys is None and self.api_keys_file is None:
            raise ValueError("set api_keys or api_keys_file: the insights API never runs open")
        unknown = set(self.regions) - set(self.model.regions)
        if unknown:
            raise ValueError(f"regions {sorted(unknown)} have no embedding row of their own in the model")
        return self

    def report_regions(self) -> list[str]:
        return list(self.regions or self.model.regions)
