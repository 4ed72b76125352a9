"""Helpers shared by tests: settings for service processes (launched with facet_lab.launcher) and signed
models and updates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import torch
from facet.compression.codecs import CodecSpec, encode_delta
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import GlobalModel, ModelUpdate
from facet.federation import updates
from facet.federation.model_signing import ModelSigner, generate_keypair
from facet.model.network import ModelConfig
from facet.service.auth import hash_api_key
from facet.service.models import to_bytes

TINY_MODEL = ModelConfig(id_buckets=256, attribute_buckets=64, region_buckets=8, dim=8, max_history=5)

#: The test session's model key pair: the aggregator (or a test acting as it) signs, consumers verify.
MODEL_PRIVATE_KEY, MODEL_PUBLIC_KEY = generate_keypair()
MODEL_SIGNER = ModelSigner(MODEL_PRIVATE_KEY)


def trust_env(prefix: str) -> dict[str, str]:
    """Environment for a model consumer (trainer, recommender) that trusts this session's model key."""
    return {f"{prefix}MODEL_TRUST__PUBLIC_KEYS": json.dumps([MODEL_PUBLIC_KEY])}


def api_keys_env(prefix: str, clients: dict[str, tuple[str, str | None, list[str]]]) -> dict[str, str]:
    """``{client: (key, storefront, scopes)}`` as a service's ``API_KEYS`` setting (digests only)."""
    document = {name: {"key_sha256": [hash_api_key(key)], "storefront": storefront, "scopes": scopes}
                for name, (key, storefront, scopes) in clients.items()}
    return {f"{prefix}API_KEYS": json.dumps(document)}


def signed_model(version: int, *, seed: int | None = None, epoch: int = 0, config: ModelConfig = TINY_MODEL,
                 model_name: str = "facet-recommender") -> GlobalModel:
    from facet.model.network import new_model

    parameters = to_bytes(new_model(config, seed=version if seed is None else seed).state_dict())
    return MODEL_SIGNER.sign(GlobalModel(model_name=model_name, epoch=epoch, version=version, parameters=parameters))


def model_env(prefix: str, config: ModelConfig = TINY_MODEL) -> dict[str, str]:
    return {f"{prefix}MODEL__{k.upper()}": json.dumps(list(v)) if isinstance(v, tuple) else str(v)
            for k, v in config.model_dump().items()}


def kafka_env(kafka: KafkaSettings, topics: TopicSettings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.events_servers(),
        "FACET_KAFKA_ENABLE_IDEMPOTENCE": str(kafka.enable_idempotence).lower(),
        "FACET_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "FACET_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "FACET_TOPICS_EVENTS_PATTERN": topics.events_pattern,
        "FACET_TOPICS_UPDATES": topics.updates,
        "FACET_TOPICS_MODELS": topics.models,
        "FACET_TOPICS_STATISTICS": topics.statistics,
        "FACET_TOPICS_DEAD_LETTER": topics.dead_letter,
        "FACET_TOPICS_ZONE_UPDATES_PATTERN": topics.zone_updates_pattern,
        "FACET_LOG_JSON": "true",
    }


def signed_update(
    key: bytes, *, trainer_id: str, region: str, base_version: int, seed: int, num_samples: int = 100,
    codec: str = "fp32", config: ModelConfig = TINY_MODEL, scale: float = 0.01,
    update_id: str | None = None,
) -> ModelUpdate:
    from facet.model.network import new_model

    generator = torch.Generator().manual_seed(seed)
    shapes = {name: t.shape for name, t in new_model(config).state_dict().items()}
    delta = {name: torch.randn(shape, generator=generator) * scale for name, shape in shapes.items()}
    return updates.signed_update(key, trainer_id=trainer_id, region=region, base_version=base_version,
                                 num_samples=num_samples, codec=codec, update_id=update_id,
                                 payload=encode_delta(delta, CodecSpec.parse(codec), seed=seed))


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.3)
    return False

