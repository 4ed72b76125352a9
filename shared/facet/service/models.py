"""Global model parameters as safetensors bytes (never pickle), inline or as a fetched artifact."""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from facet.contracts import ArtifactPointer, GlobalModel
from facet.errors import PoisonMessageError, RetriableError


def to_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    return save_safetensors({name: t.detach().contiguous() for name, t in tensors.items()})


def from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types for malformed headers
        raise PoisonMessageError("bad_model", f"not a safetensors blob: {exc}") from exc


def write_artifact(
    directory: Path, model_name: str, version: int, data: bytes, base_uri: str | None
) -> ArtifactPointer:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{model_name}-v{version}.safetensors"
    temporary = directory / (name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(directory / name)
    uri = f"{base_uri.rstrip('/')}/{name}" if base_uri else (directory / name).resolve().as_uri()
    return ArtifactPointer(uri=uri, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def fetch_parameters(model: GlobalModel, timeout_s: float = 30.0) -> dict[str, torch.Tensor]:
    """The broadcast's tensors, fetching and checking the artifact when it is a pointer."""
    if model.parameters is not None:
        return from_bytes(model.parameters)
    pointer = model.artifact
    if pointer is None:  # the contract forbids it; keep mypy and hostile input honest
        raise PoisonMessageError("bad_model", "broadcast has neither parameters nor artifact")
    if not pointer.uri.startswith(("http://", "https://", "file://")):
        raise PoisonMessageError("bad_model", f"unsupported artifact scheme in {pointer.uri!r}")
    try:
        with urllib.request.urlopen(pointer.uri, timeout=timeout_s) as response:
            data = response.read(pointer.size_bytes + 1)
    except OSError as exc:
        raise RetriableError(f"cannot fetch {pointer.uri}: {exc}") from exc
    if len(data) != pointer.size_bytes or hashlib.sha256(data).hexdigest() != pointer.sha256:
        raise PoisonMessageError("bad_model", f"artifact {pointer.uri} does not match its sha256")
    return from_bytes(data)
