"""Recount of exported-blob windows: the consumed-blob record plus the lines that are new since.

A done window's record (in the ledger) says which blobs it consumed, up to which byte, and
how many lines. The hour folder is listed again with the source's own re-sweep (read-only:
``resweep`` lists and compares, it moves nothing); only the bytes it finds new (late blobs,
append-blob growth) are downloaded to count their lines. A consumed blob that was rewritten
cannot be recounted that way: the window is reported short with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.runtime.blob_errors import translate
from shared.settings import Pipeline
from shared.sources.export_blobs import ExportBlobSource
from shared.windows import WindowState

if TYPE_CHECKING:
    from shared.sources import Source

__all__ = ["count_lines", "recount_blobs"]


def count_lines(data: bytes) -> int:
    """Non-blank lines, as the source counts records offered to the mapping (pure)."""
    return sum(1 for line in data.split(b"\n") if line.strip())


def recount_blobs(
    source: Source, pipeline: Pipeline, done: Sequence[WindowState], deadline: float | None
) -> tuple[dict[datetime, tuple[int | None, str]], datetime | None]:
    """Per window start: (lines the source holds now, or None; why it changed when not countable);
    and where ``deadline`` stopped the recount (None: every window was recounted)."""
    assert isinstance(source, ExportBlobSource)
    out: dict[datetime, tuple[int | None, str]] = {}
    for state in done:
        if deadline is not None and time.monotonic() >= deadline:
            return out, state.window.start
        base = state.source_count if state.source_count is not None else state.rows + state.quarantined
        plan = source.resweep(state.window, state)
        if plan is None:
            out[state.window.start] = (base, "")
        elif plan.kind == "replace":
            out[state.window.start] = (None, f"the source changed: {plan.reason}")
        else:
            out[state.window.start] = (base + _new_lines(source, plan.payload), "")
    return out, None


def _new_lines(source: ExportBlobSource, payload: Any) -> int:
    folder = str(payload["folder"])
    total = 0
    for rel, _etag, size, _append, offset, _before in payload["jobs"]:
        name = folder + str(rel)
        if int(size) <= int(offset):
            continue
        try:
            data = source._container.download_blob(name, offset=int(offset), length=int(size) - int(offset)).readall()
        except ResourceNotFoundError:
            continue
        except AzureError as exc:
            raise translate(exc, f"read {source.config.container}/{name}") from exc
        total += count_lines(data)
    return total
