"""Measure the emulator alone: fetch a whole hour over HTTP, as fast as a raw client can.

The client side does the least possible work (``http.client``, keep-alive, body read
into bytes, row count from the ``x-emulator-row-count`` header — no JSON parsing), so
the numbers are the emulator's serving rate, the ceiling any mover benchmark runs under.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from urllib.parse import urlsplit

import orjson

from .timeutil import format_ticks, to_ticks

__all__ = ["BenchResult", "fetch_window", "self_benchmark"]


@dataclass(frozen=True)
class BenchResult:
    rows: int
    bytes: int
    seconds: float
    requests: int
    partials: int

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"{self.rows:,} rows, {self.bytes / 1e6:,.1f} MB in {self.seconds:.2f} s "
            f"over {self.requests} requests ({self.partials} partial): "
            f"{self.mb_per_s:,.1f} MB/s, {self.rows_per_s:,.0f} rows/s"
        )


def fetch_window(
    url: str,
    app_id: str,
    start: datetime,
    end: datetime,
    *,
    slices: int = 60,
    concurrency: int = 1,
    table: str = "requests",
    api_key: str | None = "dev-key",
    token: str | None = None,
) -> BenchResult:
    """Fetch ``[start, end)`` of ``table`` in ``slices`` equal windows over HTTP."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif api_key:
        headers["x-api-key"] = api_key
    t0, t1 = to_ticks(start), to_ticks(end)
    step = (t1 - t0) // slices
    edges = [t0 + i * step for i in range(slices)] + [t1]
    windows = list(pairwise(edges))
    lock = threading.Lock()
    totals = {"rows": 0, "bytes": 0, "requests": 0, "partials": 0}
    errors: list[str] = []

    def worker(mine: list[tuple[int, int]]) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=300)
        try:
            for lo, hi in mine:
                query = (
                    f"{table}\n| where timestamp >= datetime({format_ticks(lo)}) "
                    f"and timestamp < datetime({format_ticks(hi)})"
                )
                body = orjson.dumps({"query": query, "timespan": f"{format_ticks(lo)}/{format_ticks(hi)}"})
                conn.request("POST", f"/v1/apps/{app_id}/query", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    errors.append(f"HTTP {resp.status}: {data[:200]!r}")
                    return
                with lock:
                    totals["rows"] += int(resp.headers.get("x-emulator-row-count", "0"))
                    totals["bytes"] += len(data)
                    totals["requests"] += 1
                    totals["partials"] += b'"PartialError"' in data[-1024:]
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(windows[i::concurrency],)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError("benchmark request failed: " + errors[0])
    return BenchResult(totals["rows"], totals["bytes"], elapsed, totals["requests"], totals["partials"])


def self_benchmark(rows: int = 1_000_000, *, slices: int = 60, concurrency: int = 1, seed: int = 1) -> BenchResult:
    """Start an in-process emulator, load ``rows`` requests in one hour, fetch it all, report."""
    from .emulator import EmulatorConfig
    from .service import Emulator

    hour = datetime(2026, 11, 2, 10, tzinfo=UTC)
    emu = Emulator(EmulatorConfig(app_id="bench-app", max_concurrent=max(5, concurrency)))
    emu.start()
    try:
        t = time.perf_counter()
        emu.generate("requests", hour, hour + timedelta(hours=1), rows, seed=seed)
        gen = time.perf_counter() - t
        print(f"generated {rows:,} requests rows in {gen:.1f} s", flush=True)
        fetch_window(emu.url, "bench-app", hour, hour + timedelta(minutes=1), slices=1)  # warm up
        result = fetch_window(
            emu.url,
            "bench-app",
            hour,
            hour + timedelta(hours=1),
            slices=slices,
            concurrency=concurrency,
        )
        print(result, flush=True)
        return result
    finally:
        emu.stop()
