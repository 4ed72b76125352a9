"""The datasets ``facet eval`` and the benchmarks know by name."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from facet.contracts import BehaviourEvent
from facet.data.readers import JEWELRY_FILE, RETAIL_FILE, data_path, read_jewelry, read_retail
from facet.errors import ConfigurationError
from facet.workload.generator import JewelryWorkload, WorkloadConfig


class DatasetName(StrEnum):
    SYNTHETIC = "synthetic"
    JEWELRY = "jewelry"
    RETAIL = "retail"


def load_events(name: DatasetName, *, data_dir: Path | None = None, sessions: int = 20_000,
                seed: int = 7) -> list[BehaviourEvent]:
    if name is DatasetName.SYNTHETIC:
        return list(JewelryWorkload(WorkloadConfig(sessions=sessions, seed=seed)).events())
    file_name = JEWELRY_FILE if name is DatasetName.JEWELRY else RETAIL_FILE
    path = data_path(file_name, data_dir)
    if not path.exists():
        raise ConfigurationError(f"dataset file {path} is absent (see ../shared/data/README.md)")
    return list(read_jewelry(path) if name is DatasetName.JEWELRY else read_retail(path))
