from __future__ import annotations

import contextlib
import io

import msgpack
import numpy as np
import pytest
import torch
import zstandard
from facet.compression.codecs import CodecSpec, ErrorFeedback, decode_delta, encode_delta
from facet.errors import PoisonMessageError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

FINITE = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)


def _roundtrip(array: np.ndarray, spec: str) -> np.ndarray:
    payload = encode_delta({"t": torch.from_numpy(array)}, CodecSpec.parse(spec), seed=1)
    return decode_delta(payload)["t"].numpy()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 20)), elements=FINITE))
def test_lossless_codecs_are_exact(array: np.ndarray) -> None:
    for spec in ("fp32", "fp32+zstd", "rows+fp32+zstd"):
        np.testing.assert_array_equal(_roundtrip(array, spec), array)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 20)), elements=FINITE))
def test_quantizers_stay_within_their_stated_error(array: np.ndarray) -> None:
    fp16 = _roundtrip(array, "fp16+zstd")
    np.testing.assert_allclose(fp16, array, rtol=1e-3, atol=1e-3)
    int8 = _roundtrip(array, "int8+zstd")
    row_scale = np.abs(array).max(axis=1, keepdims=True) / 127.0
    # Stochastic rounding moves each value by less than one quantization step of its row.
    assert np.all(np.abs(int8 - array) <= row_scale * 1.0001 + 1e-6)


def test_int8_stochastic_rounding_is_unbiased() -> None:
    array = np.full((1, 10_000), 0.3, dtype=np.float32)
    array[0, 0] = 127.0  # scale = 1, so 0.3 must round to 0 or 1 with mean 0.3
    decoded = _roundtrip(array, "int8")
    assert decoded[0, 1:].mean() == pytest.approx(0.3, abs=0.02)


def test_rows_sends_only_changed_rows() -> None:
    table = np.zeros((10_000, 64), dtype=np.float32)
    table[[3, 77, 9000]] = 1.5
    dense = encode_delta({"t": torch.from_numpy(table)}, CodecSpec.parse("fp32"))
    sparse = encode_delta({"t": torch.from_numpy(table)}, CodecSpec.parse("rows+fp32"))
    assert len(sparse) < len(dense) / 1000
    np.testing.assert_array_equal(decode_delta(sparse)["t"].numpy(), table)


def test_topk_keeps_the_largest_values() -> None:
    array = np.arange(100, dtype=np.float32).reshape(10, 10) - 50
    decoded = _roundtrip(array, "topk:0.1+fp32")
    assert np.count_nonzero(decoded) == 10
    kept = np.abs(array[decoded != 0])
    assert kept.min() >= np.sort(np.abs(array).reshape(-1))[-10]


def test_error_feedback_loses_nothing_over_many_rounds() -> None:
    generator = torch.Generator().manual_seed(0)
    feedback = ErrorFeedback()
    spec = CodecSpec.parse("topk:0.05+int8+zstd")
    sent_total = torch.zeros(50, 40)
    true_total = torch.zeros(50, 40)
    for round_ in range(200):
        delta = {"t": torch.randn(50, 40, generator=generator) * 0.01}
        true_total += delta["t"]
        sent_total += decode_delta(feedback.compress(delta, spec, seed=round_))["t"]
    # What was not sent yet is exactly the residual: sent + residual == everything.
    torch.testing.assert_close(sent_total + feedback.residual["t"], true_total, rtol=1e-4, atol=1e-4)
    assert float(feedback.residual["t"].abs().max()) < float(true_total.abs().max())


def test_codec_names_round_trip() -> None:
    for name in ("fp32", "fp16+zstd", "rows+int8+zstd", "topk:0.01+int8+zstd"):
        assert CodecSpec.parse(name).name == name
    with pytest.raises(ValueError):
        CodecSpec.parse("gzip")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x28\xb5\x2f\xfd" + b"\x00" * 20,  # zstd magic, garbage frame
        b"\x81\xa7tensors\x81\xa1t\x84\xa1k\xa5dense\xa5shape\x92\xce\xff\xff\xff\xff\x04\xa6values\x80",
        b"not msgpack \xc1",
    ],
)
def test_hostile_payloads_raise_poison_errors(payload: bytes) -> None:
    with pytest.raises(PoisonMessageError):
        decode_delta(payload)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(payload: bytes) -> None:
    with contextlib.suppress(PoisonMessageError):
        decode_delta(payload)


def test_decode_is_bounded_by_the_model_schema_before_it_allocates() -> None:
    import tracemalloc


    spec = {"w": ((6, 4), torch.float32), "b": ((4,), torch.float32)}
    bogus_topk = msgpack.packb({"tensors": {
        name: {"k": "topk", "shape": [2**27], "idx": b"", "values": {"q": "fp32", "data": b""}}
        for name in ("w", "b", "x1", "x2")}}, use_bin_type=True)
    renamed = msgpack.packb({"tensors": {
        name: {"k": "topk", "shape": [2**27], "idx": b"", "values": {"q": "fp32", "data": b""}}
        for name in ("w", "b")}}, use_bin_type=True)
    zstd_bomb = zstandard.ZstdCompressor().compress(b"\x00" * (64 * 1024 * 1024))
    unsized = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(unsized, closefd=False) as writer:  # no size in the header
        writer.write(b"\x00" * (64 * 1024 * 1024))
    tracemalloc.start()
    try:
        for payload, reason in ((bogus_topk, "wrong_tensors"), (renamed, "wrong_shape"), (zstd_bomb, "oversize"),
                                (unsized.getvalue(), "oversize")):
            with pytest.raises(PoisonMessageError) as caught:
                decode_delta(payload, dense=False, spec=spec)
            assert caught.value.reason == reason
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"decoding hostile payloads allocated {peak / 2**20:.1f} MiB"
