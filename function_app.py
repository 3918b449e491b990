"""Azure Functions triggers (v2 programming model): wiring only, the engine lives in ``shared``."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared import api, ops_api

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("insights_mover")

# NCRONTAB with seconds; read when the host indexes the app (app settings are in the environment then).
SCHEDULE = os.environ.get("MOVER_SCHEDULE", "0 */5 * * * *")
VERIFY_SCHEDULE = os.environ.get("MOVER_VERIFY_SCHEDULE", "").strip()  # off unless set, e.g. "0 30 3 * * *"


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


@app.route(route="estimate", methods=["GET"])
def estimate(req: func.HttpRequest) -> func.HttpResponse:
    """Rows, source GB, queries, time and output size of a backfill of one pipeline; moves nothing."""
    return _http(api.with_engine(lambda engine: ops_api.estimate_request(engine, dict(req.params))))


@app.route(route="verify", methods=["GET", "POST"])
def verify(req: func.HttpRequest) -> func.HttpResponse:
    """Recount done windows and compare with ledger and manifests; POST with repair=true queues bad ones."""
    return _http(
        api.with_engine(lambda engine: ops_api.verify_request(engine, req.method, req.get_body(), dict(req.params)))
    )


if VERIFY_SCHEDULE:

    @app.timer_trigger(schedule=VERIFY_SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
    def mover_verify(timer: func.TimerRequest) -> None:
        """Verify the recent closed windows of every pipeline and queue bad ones for replay."""
        for entry in ops_api.verify_recent(api.engine_from_env(), budget=ops_api.VERIFY_BUDGET):
            log.info(
                "verify %s: %s", entry.get("pipeline"), entry.get("counts", entry.get("error") or entry.get("skipped"))
            )
