"""Background tasks that cannot die silently.

A service's side tasks (model feed, event follower, HTTP server) run under a :class:`TaskSupervisor`.
When one ends while the service is not stopping (an exception, or a return it should never make), the
supervisor marks readiness false at once, logs why, and requests shutdown; the service drains as on
SIGTERM and then exits non-zero, so Kubernetes or the local supervisor restarts it. A zombie that keeps
serving stale state is the failure this prevents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from prometheus_client import Counter

from facet.errors import FacetError
from facet.kafka.shutdown import ShutdownSignal
from facet.logging import get_logger
from facet.service import metric_names as names
from facet.service.health import Health

log = get_logger(__name__)

TASK_FAILURES = Counter(names.TASK_FAILURES_TOTAL, "Supervised background tasks that ended unexpectedly",
                        ["task"])


class TaskFailedError(FacetError):
    """A supervised task died; the process exits non-zero after draining."""


class TaskSupervisor:
    def __init__(self, health: Health, shutdown: ShutdownSignal) -> None:
        self.health = health
        self.shutdown = shutdown
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.failed: list[str] = []

    def start(self, name: str, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self.tasks[name] = task
        self.health.set(f"task_{name}", True)
        task.add_done_callback(lambda finished: self._finished(name, finished))
        return task

    def _finished(self, name: str, task: asyncio.Task[Any]) -> None:
        if self.shutdown.requested and (task.cancelled() or task.exception() is None):
            return  # a normal stop
        error = None if task.cancelled() else task.exception()
        self.failed.append(name)
        self.health.set(f"task_{name}", False)
        TASK_FAILURES.labels(name).inc()
        log.error("task_failed", task=name, error=repr(error)[:500] if error else "ended unexpectedly",
                  exc_info=error)
        self.shutdown.trigger(f"task_failed:{name}")

    async def wait(self, timeout_s: float = 30.0) -> None:
        """Wait for every task to end (after stop was signalled); raise if any had failed."""
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=timeout_s)
        for task in self.tasks.values():
            if not task.done():
                task.cancel()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self.failed:
            raise TaskFailedError(f"supervised task(s) failed: {', '.join(self.failed)}")
