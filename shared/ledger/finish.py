"""How a run ends in the ledger: done (T7, T14), failed (T8), paused (T6) or closed — each one
conditional write on the ETag the run holds, so a run that lost its window records nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from shared.ledger.claim import CLEAR, Claim, LeaseLost
from shared.ledger.write import Lost, Writes
from shared.model import format_ts
from shared.redact import redact
from shared.windows import WindowState

__all__ = ["FAIL_KINDS", "Finish"]

_MAX_ERROR = 4000
FAIL_KINDS = ("window", "transient")


class Finish(Writes):
    """Mixin of ``Ledger``: the writes that end a run."""

    def complete(
        self,
        claim: Claim,
        *,
        now: datetime,
        rows: int,
        nbytes: int,
        outputs: Sequence[Mapping[str, Any]],
        source_count: int | None = None,
        quarantined: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """T7/T14: done with counts and output names (also kept as the last good run).

        Every name an earlier run may have left was removed before this (``Writing`` and
        ``Leftovers`` are cleared), and a checkpoint never outlives a done run. ``LeaseLost``
        if the window was taken over.
        """
        names = [o.get("name") for o in outputs]
        good = {"rows": rows, "bytes": nbytes, "outputs": names, "finished_at": format_ts(now)}
        self._end(
            claim,
            now,
            {
                "Status": "done",
                "Rows": rows,
                "Bytes": nbytes,
                "Outputs": orjson.dumps([dict(o) for o in outputs]).decode(),
                "LastGood": orjson.dumps(good).decode(),
                "LastError": "",
                "FailKind": "",
                "NextAttemptAt": CLEAR,
                "FinishedAt": now,
                "Quarantined": quarantined,
                "SourceCount": CLEAR if source_count is None else source_count,
                "Extra": orjson.dumps(dict(extra or {})).decode(),
                "Writing": "[]",
                "Leftovers": "[]",
                "SweepAt": CLEAR,
                "Streak": 0,
            },
        )

    def restore(self, claim: Claim, previous: WindowState, *, now: datetime, keep_writing: bool) -> None:
        """T14 put back: a late-part run that moved nothing returns the window to its done record.
        ``keep_writing``: the part may be on storage (its removal failed), so a later full run removes it."""
        fields: dict[str, Any] = {
            "Status": "done",
            "Rows": previous.rows,
            "Bytes": previous.bytes,
            "Outputs": orjson.dumps([dict(o) for o in previous.outputs]).decode(),
            "SourceCount": CLEAR if previous.source_count is None else previous.source_count,
            "Quarantined": previous.quarantined,
            "Extra": orjson.dumps(dict(previous.extra)).decode(),
            "LastError": "",
            "FailKind": "",
            "FinishedAt": previous.finished_at or now,
            "SweptAt": now,
        }
        if not keep_writing:
            fields["Writing"] = orjson.dumps(list(previous.writing)).decode()
        self._end(claim, now, fields)

    def fail(
        self,
        claim: Claim,
        *,
        now: datetime,
        error: str,
        next_attempt_at: datetime | None,
        kind: str = "window",
        streak: int = 0,
    ) -> None:
        """T8: record a failure; the window stays visible as ``failed`` with its reason.

        ``transient`` (429/5xx/timeouts, storage outages) gives the attempt back: such a window is
        never closed. ``window`` keeps it; without ``next_attempt_at`` the window is closed.
        """
        fields: dict[str, Any] = {
            "Status": "failed",
            "LastError": redact(error)[:_MAX_ERROR],
            "FailKind": kind,
            "NextAttemptAt": CLEAR if next_attempt_at is None else next_attempt_at,
            "FinishedAt": now,
            "Streak": streak,  # transient failures in a row: their backoff grows with it
        }
        if kind == "transient":
            fields["Attempts"] = max(0, claim.attempts - 1)
        self._end(claim, now, fields)

    def checkpoint(self, claim: Claim, *, now: datetime, extra: Mapping[str, Any]) -> None:
        """T6: record a paused window's progress and hand it back as ``pending`` for the next run.

        The claim's attempt is given back too: pausing is not a failure.
        """
        self._end(
            claim,
            now,
            {"Status": "pending", "Attempts": max(0, claim.attempts - 1), "Extra": orjson.dumps(dict(extra)).decode()},
        )

    def _end(self, claim: Claim, now: datetime, fields: dict[str, Any]) -> None:
        fields = fields | {"LeaseOwner": "", "LeaseUntil": CLEAR, "QueuedAt": CLEAR, "UpdatedAt": now}
        with claim.lock:
            try:
                etag, row = self.transition(claim.pipeline, claim.entity | {"_etag": claim.etag}, fields, now)
            except Lost as exc:
                claim.lost.set()
                raise LeaseLost(f"{claim.pipeline} {claim.window}: lease taken over") from exc
            claim.etag, claim.entity = etag, row
