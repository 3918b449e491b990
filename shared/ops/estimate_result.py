"""What an estimate says (``Estimate``) and the output bytes per sink it predicts from a sample;
shared by the query estimate (``shared.ops.estimate``) and the blob one (``shared.ops.estimate_blobs``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.model import format_ts
from shared.ops.estimate_sample import Sample
from shared.settings import Pipeline

__all__ = ["Estimate", "outputs_for"]


@dataclass
class Estimate:
    pipeline: str
    kind: str
    start: datetime
    end: datetime
    window_size: timedelta
    covered_until: datetime
    complete: bool
    windows: int = 0
    rows: int = 0
    source_bytes: float = 0.0
    source_bytes_basis: str = ""
    queries: int | None = None
    seconds: float | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    days: list[dict[str, Any]] = field(default_factory=list)
    sample: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    estimate_queries: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "kind": self.kind,
            "start": format_ts(self.start),
            "end": format_ts(self.end),
            "window_size_s": int(self.window_size.total_seconds()),
            "complete": self.complete,
            "covered_until": format_ts(self.covered_until),
            "totals": {
                "windows": self.windows,
                "rows": self.rows,
                "source_bytes": round(self.source_bytes),
                "source_gb": round(self.source_bytes / 1e9, 3),
                "source_bytes_basis": self.source_bytes_basis,
                "queries": self.queries,
                "seconds_at_budget": None if self.seconds is None else round(self.seconds, 1),
            },
            "budget": self.budget,
            "outputs": self.outputs,
            "sample": self.sample,
            "days": self.days,
            "notes": self.notes,
            "estimate_queries": self.estimate_queries,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def outputs_for(
    pipeline: Pipeline, sample: Sample | None, rows: int, source_bytes: float, files: int
) -> list[dict[str, Any]]:
    """Bytes per sink: ``files`` (windows with rows) × the sample's per-file overhead + ``rows`` × its
    bytes per row, both fitted on the sample's half and whole encodings — an estimate, and said so."""
    out: list[dict[str, Any]] = []
    for i, config in enumerate(pipeline.sinks):
        entry: dict[str, Any] = {"sink": i, "kind": config.kind, "target": config.container}
        if sample is None or not sample.rows:
            out.append(entry | {"format": config.format, "bytes": 0, "basis": "no rows in the range to sample"})
            continue
        measured = sample.sinks[i]
        per_file, per_row = measured.model(sample.rows)
        total = per_file * files + per_row * rows
        out.append(
            entry
            | {
                "format": measured.format,
                "compression": measured.compression,
                "bytes": round(total),
                "gb": round(total / 1e9, 3),
                "bytes_per_row": round(per_row, 1),
                "bytes_per_file": round(per_file),
                "ratio_to_source": round(total / source_bytes, 3) if source_bytes else None,
                "basis": f"estimate: {measured.basis} ({sample.rows} rows)",
            }
        )
    return out
