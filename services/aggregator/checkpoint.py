"""Atomic checkpoints: parameters as safetensors plus JSON metadata (version, epoch, applied update ids,
the running mean of sample counts, the robustness guard's history, the consumed offsets), and the guard's
recent directions as a second safetensors file when it has any.

Each checkpoint is a pair ``model-v<N>.safetensors`` + ``checkpoint-v<N>.json``, the metadata written
last; both go through :func:`facet.storage.write_atomically` (fsync of file and directory). ``latest.json``
names the newest, but loading never trusts it alone: when it or its model is missing, truncated or does
not match its sha256, the newest checkpoint that does verify is used and the log says why the others
were skipped. A failed write (disk full) raises and leaves every earlier checkpoint in place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from facet.errors import PoisonMessageError
from facet.federation.server import AggregatorState
from facet.logging import get_logger
from facet.service.models import from_bytes, to_bytes
from facet.storage import write_atomically

log = get_logger(__name__)

LATEST = "latest.json"


@dataclass(frozen=True)
class Checkpoint:
    state: AggregatorState
    #: Next offset to read per partition of the updates topic.
    offsets: dict[int, int]
    #: A zone tier's forwarded update, made durable with the state it came from and sent after: resent
    #: on restart (the global aggregator drops it if it arrived before).
    outbox: bytes | None = None


def save(directory: Path, state: AggregatorState, offsets: dict[int, int], keep: int = 3,
         outbox: bytes | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    blob = to_bytes(state.parameters)
    name = f"model-v{state.version:08d}.safetensors"
    write_atomically(directory / name, blob)
    directions = None
    if state.guard_directions:
        directions_blob = to_bytes(state.guard_directions)
        directions = f"guard-v{state.version:08d}.safetensors"
        write_atomically(directory / directions, directions_blob)
    metadata = {
        "version": state.version,
        "epoch": state.epoch,
        "parameters": name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "applied_ids": list(state.applied_ids.items()),
        "pending_contributors": state.pending_contributors,
        "mean_samples": state.mean_samples,
        "samples_counted": state.samples_counted,
        "guard_history": state.guard_history,
        "guard_directions": None if directions is None else {
            "file": directions, "sha256": hashlib.sha256(directions_blob).hexdigest()},
        "offsets": {str(p): o for p, o in offsets.items()},
        "outbox": None if outbox is None else base64.b64encode(outbox).decode(),
    }
    encoded = json.dumps(metadata).encode()
    write_atomically(directory / f"checkpoint-v{state.version:08d}.json", encoded)
    write_atomically(directory / LATEST, encoded)
    _prune(directory, keep)
    return directory / name


def _prune(directory: Path, keep: int) -> None:
    for pattern in ("checkpoint-v*.json", "model-v*.safetensors", "guard-v*.safetensors"):
        for old in sorted(directory.glob(pattern))[:-keep]:
            old.unlink(missing_ok=True)


def load(directory: Path) -> Checkpoint | None:
    """The newest checkpoint that verifies, or None when there is none at all."""
    candidates = [directory / LATEST, *sorted(directory.glob("checkpoint-v*.json"), reverse=True)]
    for path in candidates:
        if not path.exists():
            continue
        try:
            return _read(directory, path)
        except (OSError, ValueError, KeyError, TypeError, binascii.Error, PoisonMessageError) as error:
            log.warning("checkpoint_skipped", path=path.name, error=f"{type(error).__name__}: {error}"[:300])
    return None


def _read(directory: Path, path: Path) -> Checkpoint:
    metadata = json.loads(path.read_text())
    blob = (directory / Path(metadata["parameters"]).name).read_bytes()
    if hashlib.sha256(blob).hexdigest() != metadata["sha256"]:
        raise ValueError(f"{metadata['parameters']} does not match its sha256")
    state = AggregatorState(
        parameters=from_bytes(blob),
        version=int(metadata["version"]),
        applied_ids=OrderedDict((str(i), int(v)) for i, v in metadata["applied_ids"]),
        pending_contributors=list(metadata["pending_contributors"]),
        # Checkpoints written before the running mean existed restart it from the next update.
        mean_samples=metadata.get("mean_samples"),
        samples_counted=int(metadata.get("samples_counted", 0)),
        epoch=int(metadata.get("epoch", 0)),
        guard_history=dict(metadata.get("guard_history", {})),
        # Checkpoints written before the directions were kept restore none: the agreement bound waits for
        # two other trainers to report again.
        guard_directions=_read_directions(directory, metadata.get("guard_directions")),
    )
    log.info("checkpoint_loaded", path=path.name, version=state.version, epoch=state.epoch)
    outbox = metadata.get("outbox")
    return Checkpoint(state, {int(p): int(o) for p, o in metadata["offsets"].items()},
                      base64.b64decode(outbox, validate=True) if outbox else None)


def _read_directions(directory: Path, entry: dict[str, str] | None) -> dict[str, torch.Tensor]:
    if not entry:
        return {}
    blob = (directory / Path(entry["file"]).name).read_bytes()
    if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
        raise ValueError(f"{entry['file']} does not match its sha256")
    return from_bytes(blob)
