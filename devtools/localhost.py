"""``make run``: the whole product on this machine, in one command.

Starts Azurite (data kept in ``.devstack/azurite``), the local App Insights query API
emulator with seeded and live telemetry (some of it late), writes continuous-export
and diagnostic-settings blobs (history, then live, some late), then hosts the function
app like the platform would: this process runs the timer (the planner) and HTTP on
localhost:7071 like ``func start``; ``--workers`` more processes (default 2) run the
queue-triggered worker, taking windows from Azurite's queue. Every window moved is
printed. Ctrl-C stops everything, however the output is connected (``| tee`` included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.azurite import Azurite

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".devstack"
APP_ID = "local-app"
TOKEN = "dev-token"  # noqa: S105 - the local emulator's documented dev token, not a secret
IDENTITY_KEY = "dev-identity-key-not-a-secret-0123456789"  # signs devtools.identity's tokens (local only)


# Tables of the "app" source: one source, one pipeline per table, windows bounded by ingestion time.
INGESTION_TABLES = ("exceptions", "customEvents", "pageViews")


def pipelines(emulator_url: str, start: datetime) -> dict[str, Any]:
    """The dev stack's pipelines: three query-API tables in 5-minute windows with a one-minute delay,
    and one source ("app") whose tables are moved by ingestion time (late rows land in the window
    of their ingestion, with their own older timestamp)."""
    window = {"size": "PT5M", "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "delay": "PT1M", "max_per_tick": 24}
    items: list[dict[str, Any]] = []
    for table, fmt in (("requests", "jsonl"), ("dependencies", "parquet"), ("traces", "csv")):
        items.append(
            {
                "name": table,
                "source": {
                    "kind": "app_insights",
                    "app_id": APP_ID,
                    "endpoint": emulator_url,
                    "query": table,
                    # requests authenticates like in Azure: managed identity, via devtools.identity
                    "auth": {"kind": "managed_identity"}
                    if table == "requests"
                    else {"kind": "token", "setting": "MOVER_DEV_TOKEN"},
                },
                "window": window,
                "sink": {"container": "telemetry", "format": fmt},
            }
        )
    items.append(
        {
            "name": "app",
            "source": {
                "kind": "app_insights",
                "app_id": APP_ID,
                "endpoint": emulator_url,
                "tables": list(INGESTION_TABLES),
                "window_by": "ingestion",
                "auth": {"kind": "token", "setting": "MOVER_DEV_TOKEN"},
            },
            "window": {k: v for k, v in window.items() if k != "delay"},  # the ingestion default (PT2M)
            "sink": {"container": "telemetry", "format": "jsonl"},
        }
    )
    return {"pipelines": items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="insights-mover local stack")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port of the function app (default 7071)")
    parser.add_argument("--emulator-port", type=int, default=8090)
    parser.add_argument("--history", default="PT1H", help="telemetry history to seed and backfill (ISO 8601)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between timer ticks (default 10)")
    parser.add_argument("--fresh", action="store_true", help="wipe .devstack before starting")
    parser.add_argument("--duration", type=float, default=0, help="stop after N seconds (0 = until Ctrl-C)")
    parser.add_argument("--workers", type=int, default=2, help="queue worker processes (0: move windows in-process)")
    parser.add_argument("--state", type=Path, default=STATE, help="folder for Azurite's data (default .devstack)")
    args = parser.parse_args(argv)
    logging.raiseExceptions = False  # a closed stdout (| tee stopped by Ctrl-C) must not stop the cleanup

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("azure", "httpx", "urllib3", "devtools.ai_emulator"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    if args.fresh and args.state.exists():
        import shutil

        shutil.rmtree(args.state)
    azurite = Azurite(location=str(args.state / "azurite")).start()
    with contextlib.ExitStack() as stack:
        stack.callback(azurite.stop)
        code = _serve(args, azurite, stack)
    _say("stopped")
    return code


def _say(text: str) -> None:
    """Print, unless stdout is gone (a pipe whose reader was stopped by the same Ctrl-C)."""
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        print(text, flush=True)


def _serve(args: argparse.Namespace, azurite: Azurite, stack: contextlib.ExitStack) -> int:
    from devtools.ai_emulator import Emulator, EmulatorConfig
    from shared.durations import parse_duration
    from shared.windows import align_down

    _say(f"azurite        {azurite.connection_string}")
    _say("               (Azure Storage Explorer: attach to a local emulator with this connection string)")
    history = parse_duration(args.history)
    emulator = Emulator(EmulatorConfig(app_id=APP_ID, token=TOKEN, api_key="dev-key", port=args.emulator_port))
    emulator.config.token_key = IDENTITY_KEY
    emulator.start()
    stack.callback(emulator.stop)
    from devtools.identity import IdentityEndpoint

    identity = IdentityEndpoint(IDENTITY_KEY).start()
    os.environ.update({**identity.env(), "AZURE_TOKEN_CREDENTIALS": "prod"})
    stack.callback(lambda: _say(f"identity endpoint issued {identity.total_issued} token(s)"))
    stack.callback(identity.stop)
    _say(f"identity       {identity.url} (managed identity, as IDENTITY_ENDPOINT on Functions)")
    now = datetime.now(UTC)
    start = align_down(now - history, timedelta(minutes=5))
    for i, table in enumerate(("requests", "dependencies", "traces")):
        emulator.generate(table, start, now, count=int(history.total_seconds() // 2), seed=i + 1, late_fraction=0.05)
    for i, table in enumerate(INGESTION_TABLES):  # some arrive up to 3 h late: in later ingestion windows
        emulator.generate(table, start, now, count=int(history.total_seconds() // 20), seed=i + 11, late_fraction=0.2)
    emulator.start_seeder(rate=5.0, late_fraction=0.05)
    _say(f"query emulator {emulator.url}/v1/apps/{APP_ID}/query (token {TOKEN})")

    from azure.storage.blob import BlobServiceClient

    from devtools import export_writer

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    hour = now.replace(minute=0, second=0, microsecond=0)
    fresh_export = not blobs.get_container_client("export").exists()
    for h in range(1, 4) if fresh_export else ():  # three closed hours (a few malformed lines among them)
        for n, export_type in enumerate(("Requests", "Rdd")):
            export_writer.write_export_hour(
                blobs.get_container_client("export"),
                export_type,
                hour - h * timedelta(hours=1),
                blobs=12,
                lines_per_blob=10,
                seed=f"{export_type}:{h}",
                bad_every=7 if n == 0 else 0,
            )
        export_writer.write_diagnostic_hour(
            blobs.get_container_client(export_writer.diagnostic_container("AppRequests")),
            "AppRequests",
            hour - h * timedelta(hours=1),
            appends=6,
            lines_per_append=10,
            seed=h,
        )
    live = export_writer.LiveExportWriter(blobs, every=10.0, late_fraction=0.1).start()
    stack.callback(live.stop)
    _say("export blobs   containers 'export' (continuous export), 'insights-logs-apprequests' (diagnostic settings)")
    config = pipelines(emulator.url, start)
    config["pipelines"] += export_writer.dev_pipelines(hour - timedelta(hours=3))

    os.environ.update(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "MOVER_DEV_TOKEN": TOKEN,
            "MOVER_PIPELINES": json.dumps(config),
            "MOVER_SCHEDULE": "*/10 * * * * *",
            "MOVER_TIME_BUDGET": "PT50S",
            "MOVER_DISPATCH": "queue" if args.workers else "inline",
        }
    )
    from devtools.funchost import LocalHost, index_app, load_app

    host = LocalHost(index_app(load_app()), port=args.port)
    _print_progress()
    from shared.frontends.cli_run import start_workers, stop_workers

    # more function app "instances" with only the queue triggers, as the platform scales out
    workers = start_workers([sys.executable, "-m", "devtools.funchost", "--queues-only"], args.workers)
    stack.callback(stop_workers, workers)
    host.start(timer_every=args.every, queues=not workers)
    stack.callback(host.stop)
    shape = f"planner here + {len(workers)} worker process(es) on queue mover-windows" if workers else "in-process"
    _say(f"function app   {host.url}/api/status  ·  POST {host.url}/api/replay  ·  {host.url}/api/status?format=html")
    if workers:
        _say(f"               worker pids {' '.join(str(w.pid) for w in workers)}")
    _say(f"               {shape}; Ctrl-C stops everything.")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(args.duration or None)
    _say("\nstopping…")
    return 0


def _print_progress() -> None:
    """Print each window result as the engine logs it (window, rows, bytes, lag)."""

    class Progress(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "shared.engine.worker" and record.levelno >= logging.INFO:
                print(f"  {self.format(record)}", flush=True)

    handler = Progress()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logging.getLogger("shared.engine.worker").addHandler(handler)
    logging.getLogger("shared.engine.worker").propagate = False


if __name__ == "__main__":
    sys.exit(main())
