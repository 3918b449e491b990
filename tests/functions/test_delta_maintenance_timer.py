"""The optional Delta maintenance timer: registered only when its schedule is set (read at indexing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.stack import ROOT

SCRIPT = """
import json
from azure.functions.timer import TimerRequest
import function_app
from devtools.funchost import index_app
timers = index_app(function_app.app).timers
out = {name: t.schedule for name, t in timers.items()}
if "mover_delta_maintenance" in timers:
    timers["mover_delta_maintenance"].call(TimerRequest(past_due=False))
print(json.dumps(out))
"""


def _timers(env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "maintenance of" not in done.stderr  # the run itself logged no failure
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_maintenance_timer_only_when_scheduled(storage_conn, unique):
    pipeline = {
        "name": "app",
        "source": {
            "kind": "app_insights",
            "app_id": "a",
            "query": "requests",
            "auth": {"kind": "token", "setting": "T"},
        },
        "window": {"size": "PT1H", "start": "2026-11-02T00:00:00Z"},
        "sink": {"kind": "delta", "container": f"lake-{unique}"},
    }
    env = {k: v for k, v in os.environ.items() if k != "MOVER_DELTA_MAINTENANCE_SCHEDULE"} | {
        "AzureWebJobsStorage": storage_conn,
        "T": "token",
        "MOVER_PIPELINES": json.dumps({"pipelines": [pipeline]}),
    }
    assert "mover_delta_maintenance" not in _timers(env)
    timers = _timers(env | {"MOVER_DELTA_MAINTENANCE_SCHEDULE": "0 30 3 * * *"})
    assert timers["mover_delta_maintenance"] == "0 30 3 * * *"
