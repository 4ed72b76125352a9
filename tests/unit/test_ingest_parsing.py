"""Ingest parses a body within a budget fixed before it materialises anything."""

from __future__ import annotations

import json
import tracemalloc

import msgpack
import pytest
from facet_ingest.parsing import BodyBudget, BodyRejected, parse_body

BUDGET = BodyBudget(max_events=1000)
FOUR_MIB = 4 * 1024 * 1024


def _event(i: int) -> dict[str, object]:
    return {"occurred_at": "2026-11-01T00:00:00+00:00", "region": "eu", "storefront": "s", "shopper_id": f"s{i}",
            "session_id": "x", "item_id": f"i{i}", "event_type": "view", "attributes": {"metal": "gold"}}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\x80" * FOUR_MIB, "application/msgpack"),  # 4 MiB of empty maps
        (b"\xdd\x00\x00\x03\xe8" + b"\x90" * (FOUR_MIB - 5), "application/msgpack"),  # arrays of empty arrays
        (msgpack.packb({"events": [[[]] * 1000] * 1000}), "application/msgpack"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),  # nesting
        (b"[" + b"[]," * (FOUR_MIB // 3 - 1) + b"[]]", "application/json"),  # 1.4M empty arrays
        (b'{"events": [' + b'"ab",' * (FOUR_MIB // 5 - 4) + b'"ab"]}', "application/json"),
        (msgpack.packb({"t": msgpack.Timestamp(2**40, 0)}, datetime=False), "application/msgpack"),
    ],
)
def test_hostile_bodies_are_refused_within_ten_times_their_size(body: bytes, content_type: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(BodyRejected) as caught:
            parse_body(body, content_type, BUDGET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.status in (400, 413)
    # A few MiB of fixed parser overhead are allowed for small bodies; the target is about large ones.
    assert peak <= 10 * max(len(body), 512 * 1024), f"peak {peak / 2**20:.1f} MiB for a {len(body)}-byte body"


@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
def test_a_full_legitimate_batch_is_parsed(content_type: str) -> None:
    document = {"events": [_event(i) for i in range(1000)]}
    body = json.dumps(document).encode() if content_type.endswith("json") else msgpack.packb(document)
    assert parse_body(body, content_type, BUDGET) == document


def test_json_with_nan_still_reaches_per_event_validation() -> None:
    parsed = parse_body(b'{"events": [{"price": NaN}, {"price": Infinity}]}', "application/json", BUDGET)
    assert isinstance(parsed, dict) and len(parsed["events"]) == 2


def test_unsupported_media_is_415() -> None:
    with pytest.raises(BodyRejected) as caught:
        parse_body(b"hello", "text/plain", BUDGET)
    assert caught.value.status == 415
