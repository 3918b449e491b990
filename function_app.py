"""Azure Functions triggers (v2 programming model): wiring only, the engine lives in ``shared``."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared import api, redact

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("insights_mover")
redact.install_log_redaction()  # upstream errors may echo the credentials the engine sent

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
