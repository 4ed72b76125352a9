"""Encode and decode named weight deltas. Pure functions; each tensor's encoding is self-describing, so
the aggregator decodes any mix of codecs. A codec is named by a spec string, sparsifier first:

    fp32 | fp16 | int8                     quantizer (int8: stochastic rounding, one scale per row)
    rows+<quantizer>                       only the rows of 2-D tensors that changed (embedding tables)
    topk:<fraction>+<quantizer>            the largest-magnitude fraction of each tensor
    ...+zstd                               zstd over the whole msgpack payload

Top-k drops information on purpose; :class:`ErrorFeedback` keeps what was dropped (and any quantization
error) in the trainer and adds it to the next delta, so nothing is lost over rounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import numpy as np
import torch
import zstandard

from facet.errors import PoisonMessageError

Quantizer = Literal["fp32", "fp16", "int8"]
#: Hard cap on a decoded payload: refuses zstd bombs and absurd declared shapes.
MAX_DECODED_BYTES = 512 * 1024 * 1024
_MAX_ELEMENTS = MAX_DECODED_BYTES // 4


@dataclass(frozen=True)
class CodecSpec:
    quantizer: Quantizer = "fp32"
    sparsifier: Literal["none", "rows", "topk"] = "none"
    topk_fraction: float = 1.0
    zstd: bool = False

    @classmethod
    def parse(cls, spec: str) -> CodecSpec:
        quantizer: Quantizer = "fp32"
        sparsifier: Literal["none", "rows", "topk"] = "none"
        fraction, use_zstd = 1.0, False
        for part in spec.strip().lower().split("+"):
            if part in ("fp32", "fp16", "int8"):
                quantizer = part  # type: ignore[assignment]
            elif part == "rows":
                sparsifier = "rows"
            elif part.startswith("topk:"):
                sparsifier = "topk"
                fraction = float(part.split(":", 1)[1])
                if not 0 < fraction <= 1:
                    raise ValueError(f"top-k fraction must be in (0, 1]: {spec!r}")
            elif part == "zstd":
                use_zstd = True
            else:
                raise ValueError(f"unknown codec part {part!r} in {spec!r}")
        return cls(quantizer, sparsifier, fraction, use_zstd)

    @property
    def name(self) -> str:
        parts = []
        if self.sparsifier == "rows":
            parts.append("rows")
        elif self.sparsifier == "topk":
            parts.append(f"topk:{self.topk_fraction:g}")
        parts.append(self.quantizer)
        if self.zstd:
            parts.append("zstd")
        return "+".join(parts)

    @property
    def lossless(self) -> bool:
        return self.quantizer == "fp32" and self.sparsifier != "topk"


def _quantize(values: np.ndarray, quantizer: Quantizer, rng: np.random.Generator) -> dict[str, Any]:
    """values: a 2-D float32 array (rows × columns)."""
    if quantizer == "fp32":
        return {"q": "fp32", "data": values.astype("<f4").tobytes()}
    if quantizer == "fp16":
        return {"q": "fp16", "data": values.astype("<f2").tobytes()}
    scale = np.abs(values).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    scaled = values / scale
    # Stochastic rounding: unbiased, so quantization noise averages out across updates.
    rounded = np.floor(scaled + rng.random(scaled.shape, dtype=np.float32))
    return {
        "q": "int8",
        "scale": scale.astype("<f4").tobytes(),
        "data": np.clip(rounded, -127, 127).astype(np.int8).tobytes(),
    }


def _dequantize(encoded: Mapping[str, Any], rows: int, columns: int) -> np.ndarray:
    kind = encoded.get("q")
    count = rows * columns
    if kind == "fp32":
        return _frombuffer(encoded["data"], "<f4", count).reshape(rows, columns)
    if kind == "fp16":
        return _frombuffer(encoded["data"], "<f2", count).astype(np.float32).reshape(rows, columns)
    if kind == "int8":
        scale = _frombuffer(encoded["scale"], "<f4", rows).reshape(rows, 1)
        data = _frombuffer(encoded["data"], np.int8, count).astype(np.float32).reshape(rows, columns)
        return data * scale
    raise PoisonMessageError("bad_codec", f"unknown quantizer {kind!r}")


def _frombuffer(data: object, dtype: Any, count: int) -> np.ndarray:
    if not isinstance(data, bytes):
        raise PoisonMessageError("bad_codec", "tensor data is not bytes")
    array = np.frombuffer(data, dtype=dtype)
    if array.size != count:
        raise PoisonMessageError("bad_codec", f"expected {count} values, found {array.size}")
    return array


def _as_matrix(array: np.ndarray) -> np.ndarray:
    return array.reshape(array.shape[0], -1) if array.ndim >= 2 else array.reshape(1, -1)


def encode_tensor(array: np.ndarray, spec: CodecSpec, rng: np.random.Generator) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype=np.float32)
    shape = list(array.shape)
    if spec.sparsifier == "rows" and array.ndim == 2:
        changed = np.flatnonzero(np.any(array != 0, axis=1)).astype("<i4")
        return {"k": "rows", "shape": shape, "rows": changed.tobytes(),
                "values": _quantize(array[changed], spec.quantizer, rng)}
    if spec.sparsifier == "topk" and array.size > 16:
        flat = array.reshape(-1)
        keep = max(1, int(np.ceil(flat.size * spec.topk_fraction)))
        index = np.argpartition(np.abs(flat), flat.size - keep)[flat.size - keep :]
        index = np.sort(index).astype("<i4")
        return {"k": "topk", "shape": shape, "idx": index.tobytes(),
                "values": _quantize(flat[index].reshape(1, -1), spec.quantizer, rng)}
    return {"k": "dense", "shape": shape, "values": _quantize(_as_matrix(array), spec.quantizer, rng)}


@dataclass(frozen=True)
class SparseRows:
    """A 2-D delta whose only non-zero rows are ``rows`` (sorted, unique)."""

    shape: tuple[int, int]
    rows: np.ndarray
    values: np.ndarray

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        out[self.rows] = self.values
        return out

    def torch(self) -> torch.Tensor:
        """A coalesced hybrid COO tensor: adding it to a dense tensor touches only its rows."""
        indices = torch.from_numpy(self.rows.astype(np.int64)).unsqueeze(0)
        # decode_tensor checked the rows are in range, sorted and unique: the invariants hold.
        return torch.sparse_coo_tensor(indices, torch.from_numpy(self.values.copy()), self.shape,
                                       is_coalesced=True, check_invariants=False)


def decode_tensor(
    encoded: Mapping[str, Any], *, keep_sparse_rows: bool = False, expected_shape: tuple[int, ...] | None = None
) -> np.ndarray | SparseRows:
    """One tensor entry. With ``expected_shape``, a different declared shape is refused before anything
    is allocated (a 600-byte entry may not declare a 128M-element tensor)."""
    try:
        shape = tuple(int(d) for d in encoded["shape"])
        kind = encoded["k"]
        values = encoded["values"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise PoisonMessageError("bad_codec", f"malformed tensor entry: {exc}") from exc
    if expected_shape is not None and shape != tuple(expected_shape):
        raise PoisonMessageError("wrong_shape", f"declared shape {shape[:8]} != expected {tuple(expected_shape)}")
    if len(shape) > 8 or any(d < 0 for d in shape):
        raise PoisonMessageError("bad_codec", f"declared shape {shape[:8]} is out of bounds")
    size = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if size > _MAX_ELEMENTS:
        raise PoisonMessageError("bad_codec", f"declared shape {shape} is out of bounds")
    if not isinstance(values, Mapping):
        raise PoisonMessageError("bad_codec", "tensor values are not a map")
    if kind == "dense":
        leading = shape[0] if len(shape) >= 2 else 1
        return _dequantize(values, leading, size // max(leading, 1)).reshape(shape)
    if kind == "rows" and len(shape) == 2:
        changed = _frombuffer(encoded.get("rows"), "<i4", len(encoded.get("rows", b"")) // 4)
        if changed.size > 1 and not bool((changed[1:] > changed[:-1]).all()):
            raise PoisonMessageError("bad_codec", "row indices must be sorted and unique")
        if changed.size and (changed[0] < 0 or changed[-1] >= shape[0]):  # sorted: first and last bound all
            raise PoisonMessageError("bad_codec", "row index out of range")
        sparse = SparseRows((shape[0], shape[1]), changed, _dequantize(values, changed.size, shape[1]))
        return sparse if keep_sparse_rows else sparse.dense()
    if kind == "topk":
        index = _frombuffer(encoded.get("idx"), "<i4", len(encoded.get("idx", b"")) // 4)
        if index.size and (index.min() < 0 or index.max() >= size):
            raise PoisonMessageError("bad_codec", "top-k index out of range")
        out = np.zeros(size, dtype=np.float32)
        out[index] = _dequantize(values, 1, index.size).reshape(-1)
        return out.reshape(shape)
    raise PoisonMessageError("bad_codec", f"unknown tensor encoding {kind!r}")


def encode_delta(delta: Mapping[str, torch.Tensor], spec: CodecSpec, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    body = {name: encode_tensor(t.detach().cpu().numpy(), spec, rng) for name, t in delta.items()}
    packed: bytes = msgpack.packb({"codec": spec.name, "tensors": body}, use_bin_type=True)
    return zstandard.ZstdCompressor(level=3).compress(packed) if spec.zstd else packed


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


ShapeSpec = Mapping[str, tuple[tuple[int, ...], Any]]


def bounded_zstd(payload: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes. A frame that declares a larger size is refused before anything
    is allocated (``decompress`` would allocate what the header declares); one that does not declare its
    size is streamed and cut off one byte past the limit."""
    declared = zstandard.frame_content_size(payload)
    if declared > limit:
        raise PoisonMessageError("oversize", f"compressed payload declares {declared} bytes; the limit is {limit}")
    with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
        data: bytes = reader.read(limit + 1)
    return data


def decoded_size_bound(spec: ShapeSpec) -> int:
    """Most bytes an honest payload for ``spec`` can decompress to: every element as a float32 value plus
    a 4-byte index (top-k at fraction 1), plus msgpack framing."""
    elements = sum(int(np.prod(shape, dtype=np.float64)) if shape else 1 for shape, _ in spec.values())
    return 8 * elements + 4096 * (len(spec) + 1)


def decode_delta(payload: bytes, *, dense: bool = True, spec: ShapeSpec | None = None) -> dict[str, torch.Tensor]:
    """Decode any codec's payload; hostile input raises PoisonMessageError, whatever the bytes.

    ``dense=False`` keeps row-sparse tensors sparse (torch COO), so the aggregator's work per update is
    proportional to the rows a trainer changed, not to the size of the embedding table.

    With ``spec`` (the model's names and shapes) the decode is bounded before it allocates: decompression
    stops at what an honest payload for this model can hold, the tensor map must name exactly the
    model's tensors, and each entry's declared shape must be the model's.
    """
    limit = MAX_DECODED_BYTES if spec is None else min(MAX_DECODED_BYTES, decoded_size_bound(spec))
    try:
        if payload[:4] == _ZSTD_MAGIC:
            payload = bounded_zstd(payload, limit)
        if len(payload) > limit:
            raise PoisonMessageError("oversize", f"payload of {len(payload)} bytes exceeds {limit}")
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True,
                               max_map_len=max(64, 2 * len(spec)) if spec is not None else 1_000_000)
    except PoisonMessageError:
        raise
    except Exception as exc:  # zstd, msgpack (ValueError, StackError, ...): all the payload's fault
        raise PoisonMessageError("bad_codec", f"undecodable payload: {type(exc).__name__}: {exc}") from exc
    tensors = body.get("tensors") if isinstance(body, dict) else None
    if not isinstance(tensors, dict):
        raise PoisonMessageError("bad_codec", "payload has no tensor map")
    if spec is not None and set(tensors) != set(spec):
        missing, extra = sorted(set(spec) - set(tensors)), sorted(map(str, set(tensors) - set(spec)))
        raise PoisonMessageError("wrong_tensors", f"missing {missing[:3]}, unexpected {extra[:3]}")
    out: dict[str, torch.Tensor] = {}
    for name, encoded in tensors.items():
        if not isinstance(encoded, dict):
            raise PoisonMessageError("bad_codec", f"{name}: entry is not a map")
        expected = tuple(spec[name][0]) if spec is not None else None
        decoded = decode_tensor(encoded, keep_sparse_rows=not dense, expected_shape=expected)
        out[name] = decoded.torch() if isinstance(decoded, SparseRows) else torch.from_numpy(decoded.copy())
    return out


class ErrorFeedback:
    """Keeps what compression dropped and adds it to the next delta (Deep Gradient Compression style)."""

    def __init__(self) -> None:
        self.residual: dict[str, torch.Tensor] = {}

    def compress(self, delta: Mapping[str, torch.Tensor], spec: CodecSpec, seed: int = 0) -> bytes:
        corrected = {n: t + self.residual[n] if n in self.residual else t.clone() for n, t in delta.items()}
        payload = encode_delta(corrected, spec, seed)
        if spec.lossless:
            self.residual = {}
            return payload
        sent = decode_delta(payload)
        self.residual = {n: corrected[n] - sent[n] for n in corrected}
        return payload
