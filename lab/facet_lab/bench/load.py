"""A small HTTP load generator, run as its own process so the server under test keeps its cores.

    python -m facet_lab.bench.load --url URL [--method POST --body-file F --header K:V] --concurrency 16
        --duration 8  → prints {"requests", "seconds", "rps", "p50_ms", "p99_ms", "errors", "statuses"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from itertools import cycle
from pathlib import Path

import httpx
import numpy as np


async def run_load(urls: list[str], method: str, bodies: list[bytes], headers: dict[str, str], concurrency: int,
                   duration: float, max_requests: int | None) -> dict[str, object]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    url_cycle, body_cycle = cycle(urls), cycle(bodies or [b""])
    sent = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors, sent
            while time.perf_counter() < deadline and (max_requests is None or sent < max_requests):
                sent += 1
                url, body = next(url_cycle), next(body_cycle)
                started = time.perf_counter()
                try:
                    response = await client.request(method, url, content=body or None, headers=headers)
                    statuses[response.status_code] += 1
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    values = np.asarray(latencies) * 1000
    ok = sum(c for s, c in statuses.items() if s < 400)
    return {
        "requests": len(latencies), "ok": ok, "seconds": seconds, "rps": ok / seconds if seconds else 0.0,
        "p50_ms": float(np.percentile(values, 50)) if len(values) else None,
        "p99_ms": float(np.percentile(values, 99)) if len(values) else None,
        "errors": errors, "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body-file", type=Path, help="JSON list of request bodies (strings), sent in turn")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--max-requests", type=int)
    args = parser.parse_args()
    bodies = [b.encode() for b in json.loads(args.body_file.read_text())] if args.body_file else []
    headers = dict(h.split(":", 1) for h in args.header)
    result = asyncio.run(run_load(args.url, args.method, bodies, headers, args.concurrency, args.duration,
                                  args.max_requests))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
