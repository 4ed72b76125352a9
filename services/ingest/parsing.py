"""Request bodies parsed within a budget fixed before anything is materialised.

A 4 MiB body of empty msgpack maps or nested JSON arrays would otherwise become millions of Python
objects (tens of bytes each: +288 MiB measured for msgpack). Both formats are walked under the same
limits, sized from what a legitimate batch can hold: at most ``max_events`` events of at most
``max_elements_per_event`` values each, nested at most ``max_depth`` deep. JSON is pre-scanned by ijson's
streaming C parser (constant memory) before ``json.loads``; msgpack is unpacked with length limits and
hooks that count every container as it is built and stop the unpacker once the budget is spent.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import ijson
import msgpack

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


class BodyRejected(Exception):
    """The body cannot be accepted: ``status`` is the HTTP status to answer with (400, 413 or 415)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class BodyBudget:
    max_events: int
    max_elements_per_event: int = 48
    #: {"events": [ {event ... "attributes": {...}} ]}: four levels; a little slack for extensions.
    max_depth: int = 6
    max_string_bytes: int = 4096

    @property
    def max_elements(self) -> int:
        return self.max_events * self.max_elements_per_event + 64


def parse_body(body: bytes, content_type: str, budget: BodyBudget) -> object:
    media = content_type.split(";", 1)[0].strip().lower()
    if media in MSGPACK_TYPES:
        return _msgpack(body, budget)
    if media in ("application/json", ""):
        if not _within_by_count(body, budget):
            _scan_json(body, budget)
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as error:
            raise BodyRejected(400, f"body is not valid JSON: {error}") from error
    raise BodyRejected(415, f"unsupported content type {media!r}; use JSON or msgpack")


def _within_by_count(body: bytes, budget: BodyBudget) -> bool:
    """A C-speed upper bound: every JSON container opens with a bracket and every value after the first in
    a container follows a comma, so these counts bound what ``json.loads`` builds (brackets and commas
    inside strings only over-count). Within budget: no scan needed. Over it: the exact scan decides, so
    a legitimate batch with commas in its queries is not refused."""
    containers = body.count(b"[") + body.count(b"{")
    return containers <= 4 * budget.max_events + 16 and containers + body.count(b",") <= budget.max_elements


def _scan_json(body: bytes, budget: BodyBudget) -> None:
    # Python's json (the real parse) reads NaN and Infinity, so one such value fails only its event; yajl
    # refuses them. The scan only counts, so each is swapped for a number of the same length first.
    scannable = body.replace(b"Infinity", b"0       ").replace(b"NaN", b"0  ")
    depth = elements = 0
    try:
        for event, _ in ijson.basic_parse(io.BytesIO(scannable)):
            if event in ("start_map", "start_array"):
                depth += 1
                if depth > budget.max_depth:
                    raise BodyRejected(400, f"JSON nested deeper than {budget.max_depth} levels")
            elif event in ("end_map", "end_array"):
                depth -= 1
            elements += 1
            if elements > 2 * budget.max_elements:  # keys and values are separate tokens
                raise BodyRejected(413, f"body holds more than {budget.max_elements} values")
    except ijson.JSONError as error:
        raise BodyRejected(400, f"body is not valid JSON: {error}") from error


class _Spent(Exception):
    pass


def _msgpack(body: bytes, budget: BodyBudget) -> object:
    elements = 0

    def count(size: int) -> None:
        nonlocal elements
        elements += size + 1
        if elements > budget.max_elements:
            raise _Spent

    def on_list(values: list[Any]) -> list[Any]:
        count(len(values))
        return values

    def on_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        count(len(pairs))
        return dict(pairs)

    try:
        return msgpack.unpackb(
            body, raw=False, timestamp=3, strict_map_key=True, list_hook=on_list, object_pairs_hook=on_map,
            max_array_len=budget.max_events, max_map_len=budget.max_elements_per_event,
            max_str_len=budget.max_string_bytes, max_bin_len=budget.max_string_bytes, max_ext_len=64,
        )
    except _Spent:
        raise BodyRejected(413, f"body holds more than {budget.max_elements} values") from None
    except Exception as error:  # ValueError, StackError, OverflowError (a timestamp past 9999), ...
        raise BodyRejected(400, f"body is not valid msgpack: {type(error).__name__}: {error}") from error
