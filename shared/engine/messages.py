"""The work queue: one Azure Storage queue message per window (what a worker does with one is
``shared.engine.handlers``).

Messages are small JSON documents (far below the 64 KB limit):
``{"v": 1, "kind": "window" | "sweep", "pipeline", "start", "end", "at", "etag"?}``. A sweep
carries the ETag of the done record it was planned from (T11): it may claim only exactly that
record, so a replay or any other newer decision always wins (T12, docs/reliability.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError

from shared.durations import parse_timestamp
from shared.engine.run import StepPlan
from shared.errors import RetriableError
from shared.model import Window, format_ts
from shared.runtime.storage import queue_client
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

__all__ = ["MAX_CUTS", "BadMessage", "WorkMessage", "WorkQueue"]

log = logging.getLogger(__name__)
_MAX_MESSAGE = 8 * 1024
MAX_CUTS = 400  # sub-windows a message may carry (~5 KB): a window cut finer plans itself


class BadMessage(ValueError):
    """A message no worker can act on (not ours, malformed, unknown pipeline): dropped, logged."""


@dataclass(frozen=True)
class WorkMessage:
    kind: Literal["window", "sweep"]
    pipeline: str
    window: Window
    at: str = ""  # when it was sent
    etag: str = ""  # sweep: the done record's ETag it was planned from
    cuts: tuple[int, ...] = ()  # window planned ahead: where its sub-windows meet (µs after its start)
    planned: int = -1  # … and the rows its count found (-1: not planned ahead)

    @property
    def plan(self) -> StepPlan | None:
        """The sub-windows the planner counted for this window, if it did."""
        if self.planned < 0:
            return None
        start = self.window.start
        bounds = [start, *(start + timedelta(microseconds=c) for c in self.cuts), self.window.end]
        return StepPlan(tuple(Window(a, b) for a, b in pairwise(bounds)), self.planned)

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": 1,
            "kind": self.kind,
            "pipeline": self.pipeline,
            "start": format_ts(self.window.start),
            "end": format_ts(self.window.end),
            "at": self.at,
        }
        if self.etag:
            body["etag"] = self.etag
        if self.planned >= 0:
            body["plan"] = {"cuts": list(self.cuts), "rows": self.planned}
        return orjson.dumps(body)

    @classmethod
    def decode(cls, body: bytes | str) -> WorkMessage:
        raw = body.encode() if isinstance(body, str) else body
        if len(raw) > _MAX_MESSAGE:
            raise BadMessage(f"message of {len(raw)} bytes is not a work message")
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadMessage(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("kind") not in ("window", "sweep"):
            raise BadMessage("not a work message (expected v=1 and kind window or sweep)")
        fields = [data.get(k) for k in ("pipeline", "start", "end")]
        if not all(isinstance(f, str) and f for f in fields):
            raise BadMessage("pipeline, start and end must be non-empty strings")
        try:
            window = Window(parse_timestamp(data["start"]), parse_timestamp(data["end"]))
        except (ValueError, OverflowError) as exc:
            raise BadMessage(f"bad window bounds: {exc}") from exc
        etag = data.get("etag") or ""
        if not isinstance(etag, str) or len(etag) > 256:
            raise BadMessage("etag must be a short string")
        cuts, planned = _plan(data.get("plan"), window)
        return cls(data["kind"], data["pipeline"], window, str(data.get("at") or ""), etag, cuts, planned)


def _plan(raw: Any, window: Window) -> tuple[tuple[int, ...], int]:
    """A plan made ahead, checked: cut points strictly inside the window, in order; else no plan."""
    if raw is None:
        return (), -1
    if not isinstance(raw, dict):
        raise BadMessage("plan must be an object with cuts and rows")
    cuts, rows = raw.get("cuts"), raw.get("rows")
    size = window.size // timedelta(microseconds=1)
    if (
        not isinstance(cuts, list)
        or len(cuts) > MAX_CUTS
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in cuts)
        or not isinstance(rows, int)
        or rows < 0
        or any(b <= a for a, b in pairwise([0, *cuts, size]))
    ):
        raise BadMessage("plan must hold increasing cut points inside the window and a row count")
    return tuple(cuts), rows


class WorkQueue:
    """Sends work messages to the state account's queue (created on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.queue_name
        self.poison_name = f"{settings.queue_name}-poison"
        self._settings = settings
        self._client: QueueClient | None = None

    @property
    def client(self) -> QueueClient:
        if self._client is None:
            client = queue_client(self._settings.state, self.name)
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise RetriableError(f"work queue {self.name}: {exc.message}") from exc
            self._client = client
        return self._client

    def send(self, message: WorkMessage) -> None:
        try:
            self.client.send_message(message.encode())
        except AzureError as exc:
            raise RetriableError(f"work queue {self.name}: cannot send: {exc.message}") from exc

    def send_window(self, pipeline: str, window: Window, now: datetime, plan: StepPlan | None = None) -> None:
        cuts: tuple[int, ...] = ()
        planned = -1
        if plan is not None and plan.fits(window) and len(plan.steps) <= MAX_CUTS:
            cuts = tuple((s.start - window.start) // timedelta(microseconds=1) for s in plan.steps[1:])
            planned = plan.planned
        self.send(WorkMessage("window", pipeline, window, format_ts(now), cuts=cuts, planned=planned))

    def send_sweep(self, pipeline: str, window: Window, etag: str, now: datetime | None = None) -> None:
        self.send(WorkMessage("sweep", pipeline, window, format_ts(now) if now else "", etag))

    def depth(self) -> int:
        """Approximate number of messages waiting (visible or not)."""
        try:
            return int(self.client.get_queue_properties().approximate_message_count or 0)
        except AzureError as exc:
            raise RetriableError(f"work queue {self.name}: {exc.message}") from exc
