"""The last verification of each pipeline, kept in the ledger table for the status page.

One entity per pipeline in a partition of its own (PartitionKey ``~verify``, RowKey the
pipeline name): the window partitions and their ``~meta`` row are never touched, so no
ledger query that lists a pipeline's windows can ever see it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.model import format_ts

if TYPE_CHECKING:
    from shared.ledger import Ledger
    from shared.ops.verify import Verification

__all__ = ["PARTITION", "load_verification", "save_verification"]

PARTITION = "~verify"


def save_verification(ledger: Ledger, result: Verification, now: datetime) -> None:
    """Replace the pipeline's record with ``result``'s counts."""
    entity = {
        "PartitionKey": PARTITION,
        "RowKey": result.pipeline,
        "Checked": len(result.checks),
        "Complete": result.count("complete"),
        "Short": result.count("short"),
        "Over": result.count("over"),
        "Missing": result.count("missing"),
        "Repaired": result.repaired,
        "RangeStart": result.start,
        "RangeEnd": result.covered_until or result.end,
        "VerifiedAt": now,
    }
    ledger.put_record(entity)


def load_verification(ledger: Ledger, pipeline: str) -> dict[str, Any] | None:
    """``{"checked", "complete", "share", "at", ...}`` of the last verification, or None."""
    e = ledger.record(PARTITION, pipeline)
    if e is None:
        return None
    checked = int(e.get("Checked", 0) or 0)
    complete = int(e.get("Complete", 0) or 0)
    at = e.get("VerifiedAt")
    return {
        "checked": checked,
        "complete": complete,
        "share": round(complete / checked, 4) if checked else 1.0,
        "at": format_ts(at.astimezone(UTC)) if isinstance(at, datetime) else None,
        "short": int(e.get("Short", 0) or 0),
        "over": int(e.get("Over", 0) or 0),
        "missing": int(e.get("Missing", 0) or 0),
    }
