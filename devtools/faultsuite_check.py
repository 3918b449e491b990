"""The fault suite's verdict: every output row against the source; the ledger and manifests against the blobs.

Reads *every* data blob in the output container — not only the ones the ledger names —
because a stale or stray file is exactly how a duplicate would hide. Rows are keyed by
(table, itemId): ``lost`` counts source rows found in no blob, ``duplicated`` counts
output rows beyond one per key, ``foreign`` rows the source never had, ``misplaced``
rows in another window's file, ``mismatched`` rows whose values differ from the source.
Each window's ledger entry and manifest must name exactly the blobs present, with their
row counts and the SHA-256 of the bytes stored — so a late writer that replaced a file
after the window was recorded would show too. A window the caller names as ``closed`` (failed
for a reason of its own, which only a replay reopens: ``devtools.faultsuite_settle``) holds
no rows by design: its source rows are ``withheld``, not lost, and any row stored for it
counts as foreign.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from devtools.ai_emulator.schema import resolve_table
from shared.ledger import Ledger
from shared.model import Column, Window, format_ts, window_key
from shared.sources.wire import convert_rows
from shared.windows import WindowState

__all__ = ["PipelineRange", "Verdict", "verify"]

_DATA_SUFFIX = ".jsonl.gz"
_KEY = re.compile(r"^(\d{8}T\d{6}Z)")  # the window key a data blob's file name starts with


@dataclass(frozen=True)
class PipelineRange:
    """One pipeline of the suite: its name, source table and the hourly windows it must move."""

    name: str
    table: str
    start: datetime
    hours: int

    def windows(self) -> list[Window]:
        hour = timedelta(hours=1)
        return [Window(self.start + i * hour, self.start + (i + 1) * hour) for i in range(self.hours)]


@dataclass
class Verdict:
    """What the comparison found; ``ok`` only when nothing is off anywhere."""

    windows: int = 0
    windows_done: int = 0
    windows_closed: int = 0  # closed by a window-caused failure, as the caller expected
    rows_source: int = 0
    rows_out: int = 0
    rows_withheld: int = 0  # source rows of the closed windows
    lost: int = 0
    duplicated: int = 0
    foreign: int = 0
    misplaced: int = 0
    mismatched: int = 0
    data_blobs: int = 0
    stray_blobs: int = 0  # data blobs no window's ledger entry names
    ledger_mismatches: int = 0  # windows whose ledger entry or manifest disagrees with the blobs
    splits: int = 0  # Extra.splits summed over the ledger's final runs
    attempts_max: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.windows_done + self.windows_closed == self.windows
            and not (self.lost or self.duplicated or self.foreign or self.misplaced or self.mismatched)
            and not (self.stray_blobs or self.ledger_mismatches)
        )

    def note(self, message: str) -> None:
        if len(self.problems) < 40:  # enough to debug, not a wall of text
            self.problems.append(message)


def _expected(control: httpx.Client, table: str, window: Window) -> dict[str, dict[str, Any]]:
    """The source rows of ``window`` (visible now), in the engine's canonical types, by itemId."""
    response = control.get(
        "/_emulator/expected", params={"table": table, "start": format_ts(window.start), "end": format_ts(window.end)}
    )
    response.raise_for_status()
    schema = resolve_table(table)
    columns = tuple(Column(c.name, c.type) for c in schema.columns)
    names = [c.name for c in columns]
    raw = [[row[n] for n in names] for row in response.json()["rows"]]
    return {row["itemId"]: row for row in (dict(zip(names, r, strict=True)) for r in convert_rows(columns, raw))}


def _read(container: ContainerClient, name: str) -> tuple[list[dict[str, Any]], str]:
    """The rows of a JSONL.gz blob and the SHA-256 of its stored bytes."""
    data = container.download_blob(name).readall()
    rows = [orjson.loads(line) for line in gzip.decompress(data).splitlines() if line.strip()]
    return rows, hashlib.sha256(data).hexdigest()


def _blob_window(name: str) -> tuple[str, str]:
    """(pipeline, window key) of a data blob under the default path template (parts such as
    ``-c0001`` after the key)."""
    match = _KEY.match(name.rsplit("/", 1)[-1])
    return name.split("/", 1)[0], match.group(1) if match else ""


def verify(
    pipelines: Sequence[PipelineRange],
    *,
    container: ContainerClient,
    ledger: Ledger,
    control: httpx.Client,
    closed: Collection[tuple[str, str]] = (),
) -> Verdict:
    """Compare the output container and the ledger with the emulator's rows (see the module doc).

    ``closed``: (pipeline, window key) of windows expected ``failed`` and closed, holding no rows.
    """
    verdict = Verdict()
    try:
        names = sorted(container.list_blob_names())
    except ResourceNotFoundError:  # nothing was ever written: every window will count as lost
        names = []
    data = [n for n in names if n.endswith(_DATA_SUFFIX)]
    verdict.data_blobs = len(data)
    by_window: dict[tuple[str, str], list[str]] = {}
    for name in data:
        by_window.setdefault(_blob_window(name), []).append(name)
    seen: Counter[tuple[str, str]] = Counter()  # (table, itemId) → output rows
    source: set[tuple[str, str]] = set()
    claimed: set[str] = set()  # blobs some window accounts for
    for spec in pipelines:
        states = {s.window.key: s for s in ledger.states(spec.name)}
        for window in spec.windows():
            verdict.windows += 1
            expected = _expected(control, spec.table, window)
            verdict.rows_source += len(expected)
            shut = (spec.name, window.key) in closed
            if shut:  # its rows are not to be stored: any stored row is foreign
                verdict.rows_withheld += len(expected)
                expected = {}
            source.update((spec.table, item) for item in expected)
            blobs = by_window.get((spec.name, window.key), [])
            claimed.update(blobs)
            stored: dict[str, tuple[int, str]] = {}  # blob → (rows, sha256)
            for blob in blobs:
                rows, digest = _read(container, blob)
                stored[blob] = (len(rows), digest)
                for row in rows:
                    item = str(row.get("itemId"))
                    seen[(spec.table, item)] += 1
                    want = expected.get(item)
                    if want is None:
                        verdict.misplaced += 1
                        verdict.note(f"{blob}: row {item} does not belong to {window}")
                    elif row != want:
                        verdict.mismatched += 1
                        verdict.note(f"{blob}: row {item} differs from the source")
            verdict.rows_out += sum(n for n, _ in stored.values())
            state = states.get(window.key)
            if shut and state is not None and state.status == "failed" and not stored:
                verdict.windows_closed += 1
            elif shut:
                verdict.note(f"{spec.name} {window.key}: expected closed with no files, is {state and state.status}"
                             f" with {sorted(stored)}")  # fmt: skip
            else:
                _check_records(verdict, container, spec.name, window, state, stored)
    for blob in data:
        if blob in claimed:
            continue
        verdict.stray_blobs += 1
        verdict.note(f"stray data blob {blob}")
        table = next((p.table for p in pipelines if p.name == _blob_window(blob)[0]), _blob_window(blob)[0])
        for row in _read(container, blob)[0]:
            verdict.rows_out += 1
            seen[(table, str(row.get("itemId")))] += 1
    verdict.lost = len(source - seen.keys())
    verdict.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    verdict.foreign = sum(n for key, n in seen.items() if key not in source)
    return verdict


def _files(entries: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, str]]:
    return {str(e["name"]): (int(e["rows"]), str(e.get("sha256", ""))) for e in entries}


def _check_records(
    verdict: Verdict, container: ContainerClient, pipeline: str, window: Window, state: WindowState | None,
    stored: dict[str, tuple[int, str]],
) -> None:  # fmt: skip
    """The ledger must say done; it and the manifest must list exactly the stored blobs (rows, SHA-256)."""
    where = f"{pipeline} {window_key(window.start)}"
    if state is None:
        verdict.note(f"{where}: not in the ledger")
        return
    verdict.attempts_max = max(verdict.attempts_max, state.attempts)
    if state.status != "done":
        verdict.note(f"{where}: {state.status} after {state.attempts} attempts: {state.error[:200]}")
        return
    verdict.windows_done += 1
    verdict.splits += int(state.extra.get("splits", 0) or 0)
    listed = _files([o for o in state.outputs if o.get("kind", "data") == "data"])
    rows = sum(n for n, _ in stored.values())
    problems: list[str] = []
    if listed != stored or state.rows != rows:
        problems.append(f"ledger says {state.rows} rows in {listed}, stored {stored}")
    manifests = [str(o["name"]) for o in state.outputs if o.get("kind") == "manifest"]
    if len(manifests) != 1:
        problems.append(f"ledger names manifests {manifests}")
    else:
        try:
            doc = orjson.loads(container.download_blob(manifests[0]).readall())
        except ResourceNotFoundError:
            doc = {}
        if _files(doc.get("files", [])) != stored or doc.get("rows") != rows:
            problems.append(f"manifest {manifests[0]} lists {doc.get('files')}, stored {stored}")
    if problems:
        verdict.ledger_mismatches += 1
        verdict.note(f"{where}: " + "; ".join(problems))
