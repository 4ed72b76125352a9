from __future__ import annotations

import pytest
from facet.config import KafkaSettings, RegionSettings, TopicSettings
from facet.errors import ConfigurationError
from pydantic import ValidationError


def test_bootstrap_from_conventional_env_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092")
    monkeypatch.setenv("FACET_KAFKA_FEDERATION_BOOTSTRAP_SERVERS", "central:9092")
    settings = KafkaSettings()
    assert settings.events_servers() == "k1:9092"
    assert settings.federation_servers() == "central:9092"


def test_missing_bootstrap_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("FACET_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ConfigurationError):
        KafkaSettings().events_servers()


def test_booleans_parse_like_booleans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACET_KAFKA_ENABLE_IDEMPOTENCE", "0")
    assert KafkaSettings().enable_idempotence is False


def test_sasl_options_pass_through() -> None:
    settings = KafkaSettings(
        bootstrap_servers="k:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="facet",
        sasl_password="s3cret",
    )
    options = settings.client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(settings)


def test_unsafe_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="SASL"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="heartbeat"):
        KafkaSettings(session_timeout_ms=3_000, heartbeat_interval_ms=2_000)
    with pytest.raises(ValidationError, match="region"):
        TopicSettings(events_pattern="facet.events.v1")
    with pytest.raises(ValidationError):
        RegionSettings(regions=("eu", "eu"))
    with pytest.raises(ValidationError):
        RegionSettings(regions=("EU west",))


def test_topic_names_follow_the_pattern() -> None:
    assert TopicSettings().events_topic("jp") == "facet.events.jp.v1"
