"""``make run``: the whole product on this machine, in one command.

Starts Azurite (data kept in ``.devstack/azurite``), the local App Insights query API
emulator with seeded and live telemetry (some of it late), writes continuous-export
and diagnostic-settings blobs (history, then live, some late), then hosts the function app's own timer and HTTP
triggers (HTTP on localhost:7071 like ``func start``) and prints every window moved.
Ctrl-C stops everything.
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


def pipelines(emulator_url: str, start: datetime) -> dict[str, Any]:
    """The dev stack's pipelines: three query-API tables, 5-minute windows, a one-minute delay."""
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
    return {"pipelines": items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="insights-mover local stack")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port of the function app (default 7071)")
    parser.add_argument("--emulator-port", type=int, default=8090)
    parser.add_argument("--history", default="PT1H", help="telemetry history to seed and backfill (ISO 8601)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between timer ticks (default 10)")
    parser.add_argument("--fresh", action="store_true", help="wipe .devstack before starting")
    parser.add_argument("--duration", type=float, default=0, help="stop after N seconds (0 = until Ctrl-C)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("azure", "httpx", "urllib3", "devtools.ai_emulator"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from devtools.ai_emulator import Emulator, EmulatorConfig
    from shared.durations import parse_duration
    from shared.windows import align_down

    if args.fresh and STATE.exists():
        import shutil

        shutil.rmtree(STATE)
    azurite = Azurite(location=str(STATE / "azurite")).start()
    print(f"azurite        {azurite.connection_string.split(';BlobEndpoint=')[1].split(';')[0]}")
    history = parse_duration(args.history)
    emulator = Emulator(EmulatorConfig(app_id=APP_ID, token=TOKEN, api_key="dev-key", port=args.emulator_port))
    emulator.config.token_key = IDENTITY_KEY
    emulator.start()
    from devtools.identity import IdentityEndpoint

    identity = IdentityEndpoint(IDENTITY_KEY).start()
    os.environ.update({**identity.env(), "AZURE_TOKEN_CREDENTIALS": "prod"})
    print(f"identity       {identity.url} (managed identity, as IDENTITY_ENDPOINT on Functions)")
    now = datetime.now(UTC)
    start = align_down(now - history, timedelta(minutes=5))
    for i, table in enumerate(("requests", "dependencies", "traces")):
        emulator.generate(table, start, now, count=int(history.total_seconds() // 2), seed=i + 1, late_fraction=0.05)
    emulator.start_seeder(rate=5.0, late_fraction=0.05)
    print(f"query emulator {emulator.url}/v1/apps/{APP_ID}/query (token {TOKEN})")

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
    print("export blobs   containers 'export' (continuous export), 'insights-logs-apprequests' (diagnostic settings)")
    config = pipelines(emulator.url, start)
    config["pipelines"] += export_writer.dev_pipelines(hour - timedelta(hours=3))

    os.environ.update(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "MOVER_DEV_TOKEN": TOKEN,
            "MOVER_PIPELINES": json.dumps(config),
            "MOVER_SCHEDULE": "*/10 * * * * *",
            "MOVER_TIME_BUDGET": "PT50S",
        }
    )
    from devtools.funchost import LocalHost, index_app, load_app

    host = LocalHost(index_app(load_app()), port=args.port)
    _print_progress()
    host.start(timer_every=args.every)
    print(f"function app   {host.url}/api/status  ·  POST {host.url}/api/replay  ·  {host.url}/api/status?format=html")
    print("Ctrl-C stops everything.")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(args.duration or None)
    print("\nstopping…")
    host.stop()
    live.stop()
    emulator.stop()
    identity.stop()
    print(f"identity endpoint issued {identity.total_issued} token(s)")
    azurite.stop()
    print("stopped")
    return 0


def _print_progress() -> None:
    """Print each window result as the engine logs it (window, rows, bytes, lag)."""

    class Progress(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "shared.runner" and record.levelno >= logging.INFO:
                print(f"  {self.format(record)}", flush=True)

    handler = Progress()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logging.getLogger("shared.runner").addHandler(handler)
    logging.getLogger("shared.runner").propagate = False


if __name__ == "__main__":
    sys.exit(main())
