"""Azure Functions triggers (v2 programming model): wiring only, the engine lives in ``shared``.

The timer plans (a singleton across instances); queue-triggered workers move one window
per message and scale out with the platform; HTTP serves replay and status.
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared import redact
from shared.frontends import http as api
from shared.frontends import http_ops as ops_api
from shared.runtime import telemetry

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("insights_mover")
telemetry.configure(os.environ)  # Azure Monitor only when APPLICATIONINSIGHTS_CONNECTION_STRING is set
redact.install_log_redaction()  # upstream errors may echo the credentials the engine sent

# Read when the host indexes the app (app settings are in the environment then).
SCHEDULE = os.environ.get("MOVER_SCHEDULE", "0 */5 * * * *")  # NCRONTAB with seconds
QUEUE = os.environ.get("MOVER_QUEUE_NAME", "mover-windows")
STATE = os.environ.get("MOVER_STATE_CONNECTION_SETTING", "AzureWebJobsStorage")  # the queue lives beside the ledger
VERIFY_SCHEDULE = os.environ.get("MOVER_VERIFY_SCHEDULE", "").strip()  # off unless set, e.g. "0 30 3 * * *"


def _http(response: api.Response) -> func.HttpResponse:
    return func.HttpResponse(
        response.body, status_code=response.status, mimetype=response.content_type.split(";")[0], charset="utf-8"
    )


@app.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def mover_tick(timer: func.TimerRequest) -> None:
    """Plan: enqueue every due window (queue dispatch) or move them here (inline dispatch)."""
    if timer.past_due:
        log.info("timer is past due; catching up")
    report = api.engine_from_env().tick()
    happened = report.queued or report.done or report.failed or report.deferred
    log.log(  # a line only when windows moved: Functions logs cost money in Application Insights
        logging.INFO if happened else logging.DEBUG,
        "tick: %d queued, %d re-sweeps queued, %d done, %d failed, %d deferred",
        report.queued,
        report.sweeps,
        report.done,
        report.failed,
        report.deferred,
    )
    for name, error in report.errors.items():
        log.error("pipeline %s: %s", name, error)


@app.queue_trigger(arg_name="msg", queue_name=QUEUE, connection=STATE)
def mover_worker(msg: func.QueueMessage) -> None:
    """Move the window one message names; raising makes the host deliver it again (then poison)."""
    outcome = api.engine_from_env().handle(msg.get_body(), dequeue_count=msg.dequeue_count or 1)
    log.debug("work message %s: %s", msg.id, outcome)  # the window's own line says what moved


@app.queue_trigger(arg_name="msg", queue_name=f"{QUEUE}-poison", connection=STATE)
def mover_poison(msg: func.QueueMessage) -> None:
    """A message the host gave up on: its window becomes ``failed`` with the reason, replayable."""
    outcome = api.engine_from_env().poisoned(msg.get_body(), reason="failed on every delivery (maxDequeueCount)")
    log.error("poison message %s: %s", msg.id, outcome)


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
