"""Helpers shared by tests: start `facet` service processes and build signed updates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import torch
from facet.compression.codecs import CodecSpec, encode_delta
from facet.config import KafkaSettings, TopicSettings
from facet.contracts import GlobalModel, ModelUpdate, TrainingMetrics
from facet.federation.model_signing import ModelSigner, generate_keypair
from facet.federation.signing import sign
from facet.kafka.broker import free_loopback_port
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
    return {f"{prefix}MODEL__{k.upper()}": str(v) for k, v in config.model_dump().items()}


def kafka_env(kafka: KafkaSettings, topics: TopicSettings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.events_servers(),
        "FACET_KAFKA_ENABLE_IDEMPOTENCE": str(kafka.enable_idempotence).lower(),
        "FACET_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "FACET_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "FACET_TOPICS_EVENTS_PATTERN": topics.events_pattern,
        "FACET_TOPICS_UPDATES": topics.updates,
        "FACET_TOPICS_MODELS": topics.models,
        "FACET_TOPICS_DEAD_LETTER": topics.dead_letter,
        "FACET_LOG_JSON": "true",
    }


class ServiceProcess:
    """`facet <args>` as a child process with its own HTTP port and a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        self.port = free_loopback_port()
        self.args = [*args, "--port", str(self.port)]
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "facet.cli", *self.args], env=self.env,
                                            stdout=sink, stderr=subprocess.STDOUT)
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self, timeout_s: float = 60.0, path: str = "/healthz") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                if httpx.get(self.url(path), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.args} not healthy: {self.log_tail()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def signed_update(
    key: bytes, *, trainer_id: str, region: str, base_version: int, seed: int, num_samples: int = 100,
    codec: str = "fp32", config: ModelConfig = TINY_MODEL, scale: float = 0.01,
    update_id: str | None = None,
) -> ModelUpdate:
    from facet.model.network import new_model

    generator = torch.Generator().manual_seed(seed)
    shapes = {name: t.shape for name, t in new_model(config).state_dict().items()}
    delta = {name: torch.randn(shape, generator=generator) * scale for name, shape in shapes.items()}
    update = ModelUpdate(
        update_id=update_id or f"{trainer_id}-{uuid.uuid4().hex}", trainer_id=trainer_id, region=region,
        base_version=base_version, num_samples=num_samples,
        metrics=TrainingMetrics(loss=1.0, samples_per_second=100.0, steps=1), codec=codec,
        payload=encode_delta(delta, CodecSpec.parse(codec), seed=seed),
    )
    return update.model_copy(update={"signature": sign(update, key)})
