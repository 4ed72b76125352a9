"""Run each service as its own OS process, the way it runs in production; restart what dies.

Children get PR_SET_PDEATHSIG so they never outlive the main job, logs go to one file per process, and
stop() sends SIGTERM (graceful drain), then SIGKILL after a grace period.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from facet.logging import get_logger

log = get_logger(__name__)


def _die_with_parent() -> None:  # pragma: no cover - runs between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exits: list[dict[str, object]] = field(default_factory=list)


class Supervisor:
    def __init__(self, log_dir: Path, restart: bool = True) -> None:
        self.log_dir = log_dir
        self.restart = restart
        self.processes: dict[str, ManagedProcess] = {}
        self.incidents: list[dict[str, object]] = []
        self._stopping = False
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> ManagedProcess:
        managed = ManagedProcess(name, args, env, self.log_dir / f"{name}.log")
        self.processes[name] = managed
        self._spawn(managed)
        return managed

    def _spawn(self, managed: ManagedProcess) -> None:
        command = [sys.executable, "-m", "facet.cli", *managed.args]
        with managed.log_path.open("ab") as sink:
            managed.process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **managed.env, "FACET_LOG_JSON": "true"}, preexec_fn=_die_with_parent,
            )

    def check(self) -> list[str]:
        """Restart processes that exited while not stopping; returns the names restarted."""
        restarted = []
        for managed in self.processes.values():
            process = managed.process
            if process is None or process.poll() is None or self._stopping:
                continue
            incident = {"process": managed.name, "exit_code": process.returncode, "at": time.time(),
                        "action": "restarted" if self.restart else "left down"}
            managed.exits.append(incident)
            self.incidents.append(incident)
            log.warning("process_exited", **incident)
            if self.restart:
                managed.restarts += 1
                self._spawn(managed)
                restarted.append(managed.name)
        return restarted

    def kill(self, name: str) -> int:
        """SIGKILL one process (chaos); the next check() restarts it."""
        process = self.processes[name].process
        if process is None:
            raise LookupError(name)
        process.kill()
        self.incidents.append({"process": name, "at": time.time(), "action": "killed (SIGKILL, chaos)"})
        return process.pid

    def stop(self, grace_s: float = 20.0, order: list[str] | None = None) -> dict[str, int | None]:
        """SIGTERM in order (producers of work first), wait, then SIGKILL stragglers; exit codes."""
        self._stopping = True
        names = order or list(self.processes)
        for name in names:
            process = self.processes[name].process
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        codes: dict[str, int | None] = {}
        for name in names:
            process = self.processes[name].process
            if process is None:
                continue
            try:
                codes[name] = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait(timeout=5)
                self.incidents.append({"process": name, "action": "killed after the grace period"})
        return codes
