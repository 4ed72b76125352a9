"""A service process's exit codes: 2 for bad configuration, 1 after a supervised task failed, 0 else."""

from __future__ import annotations

from facet.errors import ConfigurationError
from facet.service.entrypoint import run_service
from facet.service.supervision import TaskFailedError
from pydantic import BaseModel, PositiveInt


class _Settings(BaseModel):
    port: PositiveInt


async def _fine() -> None:
    return None


def test_exit_codes_say_what_to_do() -> None:
    assert run_service(_fine) == 0

    async def bad_settings() -> None:
        _Settings(port=-1)

    async def unsafe() -> None:
        raise ConfigurationError("refusing the default key")

    async def task_died() -> None:
        raise TaskFailedError("models")

    assert run_service(bad_settings) == 2
    assert run_service(unsafe) == 2
    assert run_service(task_died) == 1
