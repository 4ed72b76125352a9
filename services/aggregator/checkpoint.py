"""Atomic checkpoints: parameters as safetensors plus JSON metadata (version, applied update ids, the
running mean of sample counts, the consumed offsets). The metadata file is written last and renamed into
place, so a crash leaves either the previous checkpoint or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from facet.federation.server import AggregatorState
from facet.service.models import from_bytes, to_bytes

LATEST = "latest.json"


@dataclass(frozen=True)
class Checkpoint:
    state: AggregatorState
    #: Next offset to read per partition of the updates topic.
    offsets: dict[int, int]


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def save(directory: Path, state: AggregatorState, offsets: dict[int, int], keep: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    blob = to_bytes(state.parameters)
    name = f"model-v{state.version:08d}.safetensors"
    _write_atomically(directory / name, blob)
    metadata = {
        "version": state.version,
        "parameters": name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "applied_ids": list(state.applied_ids.items()),
        "pending_contributors": state.pending_contributors,
        "mean_samples": state.mean_samples,
        "samples_counted": state.samples_counted,
        "offsets": {str(p): o for p, o in offsets.items()},
    }
    _write_atomically(directory / LATEST, json.dumps(metadata).encode())
    for old in sorted(directory.glob("model-v*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)
    return directory / name


def load(directory: Path) -> Checkpoint | None:
    latest = directory / LATEST
    if not latest.exists():
        return None
    metadata = json.loads(latest.read_text())
    blob = (directory / metadata["parameters"]).read_bytes()
    if hashlib.sha256(blob).hexdigest() != metadata["sha256"]:
        raise RuntimeError(f"checkpoint {metadata['parameters']} does not match its sha256")
    state = AggregatorState(
        parameters=from_bytes(blob),
        version=int(metadata["version"]),
        applied_ids=OrderedDict((str(i), int(v)) for i, v in metadata["applied_ids"]),
        pending_contributors=list(metadata["pending_contributors"]),
        # Checkpoints written before the running mean existed restart it from the next update.
        mean_samples=metadata.get("mean_samples"),
        samples_counted=int(metadata.get("samples_counted", 0)),
    )
    return Checkpoint(state, {int(p): int(o) for p, o in metadata["offsets"].items()})
