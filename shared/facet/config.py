"""Settings shared by every service: Kafka connection and topic layout.

Each service owns one settings class (in its own package) that nests these. Settings are built by a
function and passed in, never created at import time, so tests and the CLI can inject their own.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facet.errors import ConfigurationError

_REGION_RE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")

#: Regions the product ships with; deployments override FACET_REGIONS.
DEFAULT_REGIONS = ("us", "eu", "uk", "in", "jp", "ae", "br")


def validate_region(region: str) -> str:
    """Region codes become topic names and consumer-group ids: keep them short and safe."""
    if not _REGION_RE.fullmatch(region):
        raise ValueError(f"region {region!r} must match {_REGION_RE.pattern}")
    return region


class KafkaSettings(BaseSettings):
    """How to reach Kafka. Regional event topics and federation topics may live on different clusters.

    ``KAFKA_BOOTSTRAP_SERVERS`` (the conventional name) or ``FACET_KAFKA_BOOTSTRAP_SERVERS`` selects an
    existing cluster; when neither is set, the broker provisioner starts the embedded one.
    """

    model_config = SettingsConfigDict(env_prefix="FACET_KAFKA_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("FACET_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    #: Cluster holding facet.events.<region>.v1 (data residency: may be a regional cluster).
    events_bootstrap_servers: str | None = None
    #: Cluster holding facet.updates.v1 and facet.models.v1 (central).
    federation_bootstrap_servers: str | None = None

    client_id: str = "facet"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    #: Idempotent producer. Correct on Apache Kafka; the embedded Tansu broker rejects it, so the
    #: provisioner turns it off there. Correctness never depends on it: consumers dedupe by id.
    enable_idempotence: bool = True
    #: Largest message a client will send or fetch (model broadcasts are the big ones).
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    #: Short in tests: a group's first join on Tansu takes about half of it.
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and (
            self.sasl_mechanism is None or not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError("SASL security needs sasl_mechanism, sasl_username and sasl_password")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        return self

    def events_servers(self) -> str:
        return self._resolve(self.events_bootstrap_servers)

    def federation_servers(self) -> str:
        return self._resolve(self.federation_bootstrap_servers)

    def _resolve(self, specific: str | None) -> str:
        servers = specific or self.bootstrap_servers
        if not servers:
            raise ConfigurationError(
                "no Kafka bootstrap servers: set KAFKA_BOOTSTRAP_SERVERS or start the embedded broker"
            )
        return servers

    def client_options(self) -> dict[str, Any]:
        """Security and sizing options every aiokafka client takes."""
        options: dict[str, Any] = {
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return options


class TopicSettings(BaseSettings):
    """Topic names and sizes. One events topic per region keeps raw behaviour in its region."""

    model_config = SettingsConfigDict(env_prefix="FACET_TOPICS_", extra="ignore")

    events_pattern: str = "facet.events.{region}.v1"
    updates: str = "facet.updates.v1"
    #: A zone tier's inbox: its regions' trainers write here, its zone aggregator forwards to ``updates``.
    zone_updates_pattern: str = "facet.updates.{zone}.v1"
    models: str = "facet.models.v1"
    #: Regional noisy interest counts, forwarded and signed by the aggregator for the insights service.
    statistics: str = "facet.statistics.v1"
    dead_letter: str = "facet.dlq.v1"
    events_partitions: int = Field(default=4, ge=1, le=1024)
    updates_partitions: int = Field(default=1, ge=1, le=64)
    replication_factor: int = Field(default=1, ge=1, le=5)
    events_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    updates_retention_ms: int = Field(default=3 * 24 * 3600 * 1000, ge=60_000)
    #: Eight days: a restarted insights service rebuilds its week of counts from the topic.
    statistics_retention_ms: int = Field(default=8 * 24 * 3600 * 1000, ge=60_000)
    dead_letter_retention_ms: int = Field(default=14 * 24 * 3600 * 1000, ge=60_000)

    @field_validator("events_pattern")
    @classmethod
    def _has_region_slot(cls, value: str) -> str:
        if "{region}" not in value:
            raise ValueError("events_pattern must contain {region}")
        return value

    def events_topic(self, region: str) -> str:
        return self.events_pattern.format(region=validate_region(region))

    def zone_updates_topic(self, zone: str) -> str:
        return self.zone_updates_pattern.format(zone=validate_region(zone))


class RegionSettings(BaseModel):
    """The regions this deployment serves, as a validated tuple."""

    regions: tuple[str, ...] = DEFAULT_REGIONS

    @field_validator("regions")
    @classmethod
    def _valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one region is required")
        if len(set(value)) != len(value):
            raise ValueError("regions must be unique")
        return tuple(validate_region(r) for r in value)


class ZoneMap(BaseModel):
    """Zones and their regions, e.g. parsed from ``apac:jp,in,ae;emea:eu,uk;americas:us,br``."""

    zones: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _disjoint(self) -> ZoneMap:
        seen: set[str] = set()
        for zone, regions in self.zones.items():
            if not _REGION_RE.fullmatch(zone):
                raise ValueError(f"zone {zone!r} must match {_REGION_RE.pattern}")
            if not regions:
                raise ValueError(f"zone {zone!r} has no regions")
            for region in regions:
                validate_region(region)
                if region in seen:
                    raise ValueError(f"region {region!r} is in two zones")
                seen.add(region)
        return self

    @classmethod
    def parse(cls, text: str) -> ZoneMap:
        zones: dict[str, tuple[str, ...]] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            zone, _, regions = part.partition(":")
            if not regions:
                raise ValueError(f"{part!r} is not zone:region,region")
            if zone.strip() in zones:
                raise ValueError(f"zone {zone.strip()!r} is named twice")
            zones[zone.strip()] = tuple(r.strip() for r in regions.split(",") if r.strip())
        return cls(zones=zones)

    def zone_of(self, region: str) -> str | None:
        return next((zone for zone, regions in self.zones.items() if region in regions), None)

    def covering(self, regions: tuple[str, ...] | list[str]) -> ZoneMap:
        """This map with the regions it leaves out of ``regions`` in one more zone, ``rest`` (a real
        dataset's long tail of countries, say)."""
        rest = tuple(r for r in regions if self.zone_of(r) is None)
        if not rest:
            return self
        if "rest" in self.zones:
            raise ValueError("zone 'rest' is taken: name every region instead")
        return ZoneMap(zones={**self.zones, "rest": rest})

