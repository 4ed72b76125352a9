"""The one way to run a Facet service as its own OS process: ``facet <args>`` with its own HTTP port and
log file, dying with its parent (PR_SET_PDEATHSIG), stopped with SIGTERM (graceful drain), then SIGKILL
after a grace period. The main job's supervisor, the service benchmarks and the tests all use it."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from facet.kafka.broker import free_loopback_port


def _die_with_parent() -> None:  # pragma: no cover - runs between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class ServiceProcess:
    """``facet <args> --port N`` as a child process; ``start()`` again after it exited restarts it."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str,
                 port: int | None = None) -> None:
        self.name = name
        self.port = port or free_loopback_port()
        self.args = [*args, "--port", str(self.port)]
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.killed_after_grace = False

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "facet_lab.cli", *self.args], env=self.env, stdout=sink,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            )
        return self

    @property
    def exit_code(self) -> int | None:
        """None while running (or never started)."""
        return None if self.process is None else self.process.poll()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self, timeout_s: float = 60.0, path: str = "/healthz") -> None:
        """Until ``path`` answers 200; RuntimeError (with the log's tail) if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.exit_code}): {self.log_tail()}")
            try:
                if httpx.get(self.url(path), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not healthy at {path}: {self.log_tail()}")

    def send_signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL (chaos, or a test's crash) and reap."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)

    def wait(self, timeout_s: float) -> int:
        """The exit code after SIGTERM; SIGKILL if the drain takes longer than ``timeout_s`` (then
        ``killed_after_grace`` is set)."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self.process.wait(timeout=max(0.1, timeout_s))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.killed_after_grace = True
            return self.process.wait(timeout=5)

    def terminate(self, timeout_s: float = 30.0) -> int:
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def stop_quietly(self) -> None:
        if self.exit_code is None:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
