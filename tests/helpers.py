"""Helpers shared by tests: start `facet` service processes and build signed updates."""

from __future__ import annotations

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
from facet.contracts import ModelUpdate, TrainingMetrics
from facet.federation.signing import sign
from facet.kafka.broker import free_loopback_port
from facet.model.network import ModelConfig

TINY_MODEL = ModelConfig(id_buckets=256, attribute_buckets=64, region_buckets=8, dim=8, max_history=5)


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
    from facet.model.training import new_model

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
