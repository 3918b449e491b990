"""What ``make bench`` measures; each function runs inside its own child process.

* ``pipeline`` — the engine as a queue worker runs it: ``WindowWorker.run_window`` of one ``PT1H``
  window to Azurite with the sub-windows the planner counted when it queued the window (a work
  message carries them; the count query runs before the clock starts, its time is ``count_s``):
  claim, sub-window queries, PartialError splitting, decoding, encoding, staged blocks, commit,
  manifest, ledger.
* ``limit`` — the raw limit on the same emulator responses: the same sub-window queries
  through httpx, each answer decoded column-wise into the same JSONL bytes, gzip at the sink's
  level, 4 MiB staged blocks, one block-list commit; encoding on the calling thread, gzip and
  Put Block on helpers. No ledger, no manifest, no engine.
* ``serve`` — the emulator alone (``devtools.ai_emulator.bench.fetch_window``: raw
  ``http.client``, no parsing): the ceiling everything else runs under.

Every function returns a JSON-able dict; ``peak_rss_mb`` (``ru_maxrss``) and ``cpu_s``
(user + system of this process) are added by ``bench.run``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import queue
import resource
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import orjson
from azure.storage.blob import BlobBlock, BlobServiceClient
from zlib_ng import zlib_ng

from shared.durations import parse_timestamp
from shared.model import Window, format_ts
from shared.settings import QuerySourceConfig, Settings, load_settings

__all__ = ["HOUR", "at_once", "bench_settings", "limit", "pipeline", "planned", "serve"]

HOUR = timedelta(hours=1)


log = logging.getLogger(__name__)


class Stopwatch:
    """Wall seconds and this process's CPU seconds (user + system, every thread) inside a ``with``
    block: what a scenario spends moving rows, without the process's start."""

    seconds = 0.0
    cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), _process_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu = round(_process_cpu() - self._cpu, 2)


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_settings(
    spec: dict[str, Any], *, sink: dict[str, Any] | None = None, sinks: dict[str, dict[str, Any]] | None = None
) -> Settings:
    """Settings with one ``bench`` pipeline over the emulator's ``requests`` table, as the app would
    load them; ``sinks`` (name → sink) makes one pipeline per entry over the same hour instead."""
    source: dict[str, Any] = {
        "kind": "app_insights", "app_id": spec["app_id"], "endpoint": spec["emulator"], "query": "requests",
        "auth": {"kind": "token", "setting": "BENCH_TOKEN"},
    }  # fmt: skip
    if spec.get("max_rows_per_query"):
        source["max_rows_per_query"] = int(spec["max_rows_per_query"])
    source |= spec.get("source_options", {})
    window = {"size": "PT1H", "start": spec["start"], "delay": "PT5M"}
    named = sinks or {"bench": sink or {"container": spec["container"], "format": "jsonl"}}
    pipelines = [{"name": name, "source": source, "window": window, "sink": s} for name, s in named.items()]
    env = {
        "AzureWebJobsStorage": spec["storage"],
        "BENCH_TOKEN": spec["token"],
        "MOVER_PIPELINES": json.dumps({"pipelines": pipelines}),
        "MOVER_LEDGER_TABLE": spec["ledger_table"],
    }
    if spec.get("memory_budget_mb"):
        env["MOVER_MEMORY_BUDGET_MB"] = str(spec["memory_budget_mb"])
    return load_settings(env)


def delta_sink(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``delta`` sink section of the bench pipeline (its table files are Parquet, counted as such)."""
    return {"kind": "delta", "container": spec["container"]}


def _window(spec: dict[str, Any]) -> Window:
    start = parse_timestamp(spec["start"])
    return Window(start, start + HOUR)


def _sink_of(spec: dict[str, Any], fmt: str, path: str | None = None) -> dict[str, Any]:
    if fmt == "delta":  # the Delta sink: one table, one commit for the hour
        return delta_sink(spec) | ({"path": path} if path else {})
    sink: dict[str, Any] = {"container": spec["container"], "format": fmt}
    if fmt in ("jsonl", "csv") and spec.get("gzip_level"):
        sink["gzip_level"] = spec["gzip_level"]
    return sink | ({"path": path + "/{window}"} if path else {})


def planned(engine: Any, pipe: Any, window: Window) -> tuple[Any, float]:
    """The window's sub-windows as the planner counts them when it queues the window (one count
    query; the work message carries them), and the seconds that query took: done before the clock
    starts, as a queued window's worker finds them in its message and the limit gets them free."""
    from shared.engine.run import StepPlan

    with Stopwatch() as watch:
        steps, rows = engine.source(pipe).plan_many([window])[window]
    return StepPlan(tuple(steps), rows), watch.seconds


def pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """One ``PT1H`` window as a queue worker moves it (``WindowWorker.run_window`` with the
    planner's sub-windows); fails unless it is ``done``."""
    from shared.app import App

    settings = bench_settings(spec, sink=_sink_of(spec, spec["format"]))
    window = _window(spec)
    engine = App(settings, clock=lambda: window.end + timedelta(days=1))
    try:
        pipe = settings.pipeline("bench")
        plan, count_s = planned(engine, pipe, window)
        with Stopwatch() as watch:
            result = engine.worker.run_window(pipe, window, plan=plan)
    finally:
        engine.close()
    if result.outcome != "done":
        raise RuntimeError(f"window not moved: {result.outcome}: {result.error}")
    state = engine.ledger.get("bench", window)
    extra = dict(state.extra) if state else {}
    return {
        "rows": result.rows, "seconds": watch.seconds, "bytes_out": result.bytes, "outputs": list(result.outputs),
        "queries": extra.get("queries"), "splits": extra.get("splits"), "count_s": round(count_s, 2),
        "moving_cpu_s": watch.cpu,
    }  # fmt: skip


def at_once(spec: dict[str, Any]) -> dict[str, Any]:
    """Windows of the hour at once in one process, as one worker instance runs queue messages (up to
    ``batchSize`` 2 + ``newBatchThreshold`` 2 = 4): one pipeline per format of ``formats`` over the same
    rows, each through ``WindowWorker.run_window`` on its own thread, sharing the query and memory budgets."""
    from shared.app import App

    formats = spec.get("formats") or ["jsonl", "parquet", "delta"]
    settings = bench_settings(spec, sinks={f"bench-{f}": _sink_of(spec, f, f"bench-{f}") for f in formats})
    window = _window(spec)
    engine = App(settings, clock=lambda: window.end + timedelta(days=1))
    try:
        plans = {p.name: planned(engine, p, window)[0] for p in settings.pipelines}
        with Stopwatch() as watch, ThreadPoolExecutor(len(formats), thread_name_prefix="window") as pool:
            moving = pool.map(lambda p: engine.worker.run_window(p, window, plan=plans[p.name]), settings.pipelines)
            results = list(moving)
    finally:
        engine.close()
    failed = [f"{r.pipeline}: {r.outcome} {r.error}" for r in results if r.outcome != "done"]
    if failed:
        raise RuntimeError(f"windows not moved: {failed}")
    return {"rows": sum(r.rows for r in results), "seconds": watch.seconds, "windows": len(results),
            "formats": formats, "bytes_out": sum(r.bytes for r in results), "moving_cpu_s": watch.cpu}  # fmt: skip


class _GzipStager:
    """Baseline output: gzip on one helper thread, 4 MiB Put Block calls on a small pool."""

    def __init__(self, blob: Any, level: int, block_size: int = 4 * 1024 * 1024) -> None:
        self._blob = blob
        self._zip = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)
        self._block_size = block_size
        self._buffer = bytearray()
        self._prefix = uuid.uuid4().hex
        self.block_ids: list[str] = []
        self.size = 0
        self._uploads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="limit-upload")
        self._in_flight: deque[Future[Any]] = deque()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=3)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="limit-gzip", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._queue.put(data)

    def _run(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                self._add(self._zip.compress(data))
            self._add(self._zip.flush())
            if self._buffer:
                self._stage(bytes(self._buffer))
            while self._in_flight:
                self._in_flight.popleft().result()
        except BaseException as exc:  # handed to the caller in close()
            self._error = exc

    def _add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._buffer += chunk
        while len(self._buffer) >= self._block_size:
            block = bytes(self._buffer[: self._block_size])
            del self._buffer[: self._block_size]
            self._stage(block)

    def _stage(self, block: bytes) -> None:
        block_id = base64.b64encode(f"{self._prefix}{len(self.block_ids):08d}".encode()).decode()
        self.block_ids.append(block_id)
        while len(self._in_flight) >= 2:
            self._in_flight.popleft().result()
        self._in_flight.append(self._uploads.submit(self._blob.stage_block, block_id, block, length=len(block)))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._uploads.shutdown()
        if self._error is not None:
            raise self._error
        self._blob.commit_block_list([BlobBlock(block_id=i) for i in self.block_ids])


def limit(spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch + parse + JSONL + gzip + staged upload of the window, with no engine around it.

    The fastest way this machine knows: the same sub-window queries, up to 4 at the service
    while the main thread decodes each answer column-wise (``decode_columns``) and builds its
    JSONL in one Arrow pass over the whole response; gzip (zlib-ng, the sink's level) and
    4 MiB Put Block calls on helper threads.
    """
    from shared.runtime.auth import HeaderProvider
    from shared.sinks.formats import GZIP_LEVEL
    from shared.sources.query_api import QueryApiSource, bounded_query

    settings = bench_settings(spec)
    config = settings.pipeline("bench").source
    assert isinstance(config, QuerySourceConfig)
    window = _window(spec)
    http = httpx.Client(limits=httpx.Limits(max_connections=16))
    # The engine's own plan (count per bin → sub-windows), computed before the clock starts:
    # the limit gets the same queries for free.
    subs = QueryApiSource(config, http, HeaderProvider(config.auth)).plan(window)
    url = f"{spec['emulator']}/v1/apps/{spec['app_id']}/query"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {spec['token']}"}
    container = BlobServiceClient.from_connection_string(spec["storage"]).get_container_client(spec["container"])
    container.create_container()
    blob = container.get_blob_client(f"limit/{window.key}.jsonl.gz")

    def fetch(sub: Window) -> bytes:
        span = f"{format_ts(sub.start)}/{format_ts(sub.end)}"
        body = orjson.dumps({"query": bounded_query(config, sub), "timespan": span})
        with http.stream("POST", url, content=body, headers=headers, timeout=300) as response:
            response.raise_for_status()
            out = io.BytesIO()  # one buffer, as the source reads it (no joined copy, no reference cycle)
            for chunk in response.iter_bytes():
                out.write(chunk)
            return out.getvalue()

    rows = bytes_in = 0
    with Stopwatch() as watch:
        out = _GzipStager(blob, spec.get("gzip_level") or GZIP_LEVEL)
        with ThreadPoolExecutor(4, thread_name_prefix="limit-fetch") as fetcher:
            ahead: deque[Future[bytes]] = deque()
            for sub in subs:
                ahead.append(fetcher.submit(fetch, sub))
                if len(ahead) < 4:
                    continue
                rows, bytes_in = _limit_write(ahead.popleft().result(), out, rows, bytes_in)
            while ahead:
                rows, bytes_in = _limit_write(ahead.popleft().result(), out, rows, bytes_in)
        out.close()
    http.close()
    return {"rows": rows, "seconds": watch.seconds, "bytes_in": bytes_in, "bytes_out": out.size,
            "queries": len(subs), "moving_cpu_s": watch.cpu}  # fmt: skip


def _limit_write(content: bytes, out: _GzipStager, rows: int, bytes_in: int) -> tuple[int, int]:
    from shared.sinks.formats.text_arrow import json_lines, write_pieces
    from shared.sources.wire_arrow import arrow_batch, decode_columns

    decoded = decode_columns(content)
    if decoded is None:
        raise RuntimeError("the limit's responses must decode column-wise (complete, typed as the service types)")
    write_pieces(out, json_lines(arrow_batch("requests", decoded.columns, decoded.table)))
    return rows + decoded.table.num_rows, bytes_in + len(content)


def serve(spec: dict[str, Any]) -> dict[str, Any]:
    """The emulator's serving rate alone: the hour in 60 slices over keep-alive ``http.client``."""
    from devtools.ai_emulator.bench import fetch_window

    window = _window(spec)
    result = fetch_window(spec["emulator"], spec["app_id"], window.start, window.end, slices=60, api_key=None,
                          token=spec["token"])  # fmt: skip
    return {"rows": result.rows, "seconds": result.seconds, "bytes_in": result.bytes, "queries": result.requests}
