"""Azure Functions triggers (v2 programming model): wiring only, the engine lives in ``shared``."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared import api

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("insights_mover")

# NCRONTAB with seconds; read when the host indexes the app (app settings are in the environment then).
SCHEDULE = os.environ.get("MOVER_SCHEDULE", "0 */5 * * * *")


def _http(response: api.Response) -> func.HttpResponse:
    return func.HttpResponse(
        response.body, status_code=response.status, mimetype=response.content_type.split(";")[0], charset="utf-8"
    )


@app.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def mover_tick(timer: func.TimerRequest) -> None:
    """Every due window of every pipeline; what does not fit the time budget waits for the next tick."""
    if timer.past_due:
        log.info("timer is past due; catching up")
    report = api.engine_from_env().tick()
    log.info("tick: %d done, %d failed, %d deferred", report.done, report.failed, report.deferred)
    for name, error in report.errors.items():
        log.error("pipeline %s: %s", name, error)


@app.route(route="replay", methods=["POST"])
def replay(req: func.HttpRequest) -> func.HttpResponse:
    """Rerun the windows of one pipeline between ``start`` and ``end`` (inline or queued)."""
    return _http(api.with_engine(lambda engine: api.replay(engine, req.get_body(), dict(req.params))))


@app.route(route="status", methods=["GET"])
def status(req: func.HttpRequest) -> func.HttpResponse:
    """The ledger per pipeline as JSON, or as a page with ``?format=html``."""
    return _http(api.with_engine(lambda engine: api.status(engine, dict(req.params))))


# Delta table maintenance (compaction of closed days, vacuum): off unless a schedule is set.
DELTA_MAINTENANCE_SCHEDULE = os.environ.get("MOVER_DELTA_MAINTENANCE_SCHEDULE", "")

if DELTA_MAINTENANCE_SCHEDULE:

    @app.timer_trigger(schedule=DELTA_MAINTENANCE_SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
    def mover_delta_maintenance(timer: func.TimerRequest) -> None:
        """Compact each closed day's multi-file windows and vacuum past the retention, per Delta sink."""
        from datetime import UTC, datetime

        from shared.sinks.delta_maintenance import maintain_pipeline

        for pipeline in api.engine_from_env().settings.pipelines:
            try:
                for done in maintain_pipeline(pipeline, now=datetime.now(UTC)):
                    log.info("delta maintenance: %s", done.to_json())
            except Exception:
                log.exception("delta maintenance of %s failed", pipeline.name)
