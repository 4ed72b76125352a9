"""Run each service as its own OS process, the way it runs in production; restart what dies.

Logs go to one file per process (JSON lines); stop() sends SIGTERM in order (graceful drain), then
SIGKILL after a grace period.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from facet.logging import get_logger

from facet_lab.launcher import ServiceProcess

log = get_logger(__name__)


class Supervisor:
    def __init__(self, log_dir: Path, restart: bool = True) -> None:
        self.log_dir = log_dir
        self.restart = restart
        self.processes: dict[str, ServiceProcess] = {}
        self.incidents: list[dict[str, object]] = []
        self._stopping = False
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(args, {**env, "FACET_LOG_JSON": "true"}, self.log_dir, name)
        self.processes[name] = service.start()
        return service

    def check(self) -> list[str]:
        """Restart processes that exited while not stopping; returns the names restarted."""
        restarted = []
        for name, service in self.processes.items():
            code = service.exit_code
            if code is None or self._stopping:
                continue
            incident = {"process": name, "exit_code": code, "at": time.time(),
                        "action": "restarted" if self.restart else "left down"}
            self.incidents.append(incident)
            log.warning("process_exited", **incident)
            if self.restart:
                service.start()
                restarted.append(name)
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
            self.processes[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        codes: dict[str, int | None] = {}
        for name in names:
            service = self.processes[name]
            if service.process is None:
                continue
            codes[name] = service.wait(deadline - time.monotonic())
            if service.killed_after_grace:
                self.incidents.append({"process": name, "action": "killed after the grace period"})
        return codes
