"""Graceful shutdown: SIGTERM/SIGINT set an event; loops stop fetching, finish, flush, commit, exit 0."""

from __future__ import annotations

import asyncio
import signal

from facet.logging import get_logger

log = get_logger(__name__)


class ShutdownSignal:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.trigger, sig.name)

    def trigger(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            log.info("shutdown_requested", reason=reason)
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True when shutdown was requested."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True
