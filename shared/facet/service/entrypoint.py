"""How every service process starts and ends: logging from its settings, then the service's coroutine;
a configuration error exits 2 with a clear message, a supervised task's failure exits 1 (after the same
drain as SIGTERM, so the orchestrator restarts it), and a graceful SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from facet.config import KafkaSettings, TopicSettings
from facet.errors import ConfigurationError
from facet.logging import configure_logging
from facet.service.supervision import TaskFailedError


class LoggingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACET_LOG_")

    level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    #: JSON lines (containers); None: JSON when stdout is not a terminal.
    json_lines: bool | None = Field(default=None, validation_alias="FACET_LOG_JSON")


def run_service(start: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run ``start()`` (which builds its settings, so a bad one is reported here) to completion; the exit code."""
    try:
        logging = LoggingSettings()
        configure_logging(logging.level, logging.json_lines)
        asyncio.run(start())
    except (ValidationError, ConfigurationError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except TaskFailedError as error:
        print(f"stopped after a failure: {error}", file=sys.stderr)
        return 1
    return 0


def run_with_settings(run: Callable[[Any, KafkaSettings, TopicSettings], Coroutine[Any, Any, None]],
                      settings_type: type[BaseSettings], **overrides: object) -> int:
    """A service's command: its settings from the environment, with the command line's non-None values on
    top, then :func:`run_service`."""
    given: dict[str, Any] = {name: value for name, value in overrides.items() if value is not None}
    return run_service(lambda: run(settings_type(**given), KafkaSettings(), TopicSettings()))
