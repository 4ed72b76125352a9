"""Global model parameters as safetensors bytes (never pickle), inline or as a fetched artifact.

Reading is bounded before it allocates: the safetensors header (names, dtypes, shapes) is checked against
the tensors this process expects, and an artifact is downloaded only from the configured aggregator,
only up to the expected size, and only loaded when its sha256 matches the signed pointer.
"""

from __future__ import annotations

import hashlib
import json
import struct
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from facet.contracts import ArtifactPointer, GlobalModel
from facet.errors import PoisonMessageError, RetriableError
from facet.federation.validation import TensorSpec
from facet.storage import write_atomically

_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}
_MAX_HEADER_BYTES = 16 * 1024 * 1024


def to_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    return save_safetensors({name: t.detach().contiguous() for name, t in tensors.items()})


def from_bytes(data: bytes, spec: TensorSpec | None = None) -> dict[str, torch.Tensor]:
    """Load safetensors bytes; with ``spec``, refuse any other names, dtypes or shapes before allocating."""
    if spec is not None:
        check_header(data, spec)
    try:
        return load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types for malformed headers
        raise PoisonMessageError("bad_model", f"not a safetensors blob: {exc}") from exc


def check_header(data: bytes, spec: TensorSpec) -> None:
    if len(data) < 8:
        raise PoisonMessageError("bad_model", "too short for a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(_MAX_HEADER_BYTES, len(data) - 8):
        raise PoisonMessageError("bad_model", f"safetensors header of {length} bytes is out of bounds")
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError as exc:
        raise PoisonMessageError("bad_model", f"unreadable safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise PoisonMessageError("bad_model", "safetensors header is not a map")
    header.pop("__metadata__", None)
    if set(header) != set(spec):
        missing, extra = sorted(set(spec) - set(header)), sorted(set(header) - set(spec))
        raise PoisonMessageError("wrong_tensors", f"missing {missing[:3]}, unexpected {extra[:3]}")
    for name, (shape, dtype) in spec.items():
        entry = header[name]
        if not isinstance(entry, dict) or _SAFETENSORS_DTYPES.get(str(entry.get("dtype"))) != dtype:
            raise PoisonMessageError("wrong_tensors", f"{name}: dtype {entry!r:.80} is not {dtype}")
        if tuple(entry.get("shape", ())) != tuple(shape):
            raise PoisonMessageError("wrong_tensors", f"{name}: shape {entry.get('shape')} != {list(shape)}")


def artifact_name(model_name: str, version: int, epoch: int = 0) -> str:
    return f"{model_name}-e{epoch}-v{version:08d}.safetensors"


def write_artifact(directory: Path, name: str, data: bytes, base_uri: str) -> ArtifactPointer:
    """Write ``data`` durably under ``directory`` and point at it below ``base_uri``."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / name, data)
    uri = f"{base_uri.rstrip('/')}/{name}"
    return ArtifactPointer(uri=uri, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def prune_artifacts(directory: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest artifacts (by modification time); returns what was removed."""
    artifacts = sorted(directory.glob("*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
    removed = artifacts[:-keep] if keep > 0 else artifacts
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def fetch_parameters(model: GlobalModel, spec: TensorSpec | None = None, *, allowed_prefix: str | None = None,
                     max_bytes: int | None = None, timeout_s: float = 30.0) -> dict[str, torch.Tensor]:
    """The broadcast's tensors, fetching and checking the artifact when it is a pointer.

    An artifact URI must start with ``allowed_prefix`` (the aggregator's artifact URL; no prefix: no
    artifact is fetched at all), its declared size must fit ``max_bytes``, and no more than that is read.
    """
    if model.parameters is not None:
        return from_bytes(model.parameters, spec)
    pointer = model.artifact
    if pointer is None:  # the contract forbids it; keep mypy and hostile input honest
        raise PoisonMessageError("bad_model", "broadcast has neither parameters nor artifact")
    if allowed_prefix is None or not pointer.uri.startswith(allowed_prefix.rstrip("/") + "/"):
        raise PoisonMessageError("bad_artifact_uri", f"artifact {pointer.uri[:200]!r} is not under the "
                                                     f"configured aggregator URL {allowed_prefix!r}")
    if max_bytes is not None and pointer.size_bytes > max_bytes:
        raise PoisonMessageError("oversize", f"artifact of {pointer.size_bytes} bytes exceeds {max_bytes}")
    data = download(pointer, timeout_s)
    return from_bytes(data, spec)


def download(pointer: ArtifactPointer, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(pointer.uri, timeout=timeout_s) as response:
            data: bytes = response.read(pointer.size_bytes + 1)
    except OSError as exc:
        raise RetriableError(f"cannot fetch {pointer.uri}: {exc}") from exc
    if len(data) != pointer.size_bytes or hashlib.sha256(data).hexdigest() != pointer.sha256:
        raise PoisonMessageError("bad_artifact", f"artifact {pointer.uri} does not match its sha256")
    return data
