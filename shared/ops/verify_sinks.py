"""A done window's outputs as its sinks hold them now: manifest rows and outputs that are gone.

Reads each sink's manifest (a blob ``_<window>.manifest.json`` or the manifest entity of a
table sink) and checks that every output it lists — and every data output the ledger
names — still exists (a HEAD per blob, one keys-only entity per table partition). Data
files are never downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.sinks._azure import translate
from shared.sinks.base import Sink
from shared.sinks.blob import BlobSink
from shared.sinks.table import TableSink
from shared.sinks.table_entities import PART
from shared.windows import WindowState

__all__ = ["check_outputs"]


def check_outputs(sinks: Sequence[Sink], state: WindowState) -> tuple[list[int | None], list[str]]:
    """Per sink the manifest's rows (None: no manifest), and the outputs that are gone."""
    rows: list[int | None] = []
    problems: list[str] = []
    for index, sink in enumerate(sinks):
        recorded = {
            str(o["name"]) for o in state.outputs if int(o.get("sink", 0)) == index and o.get("kind", "data") == "data"
        }
        if isinstance(sink, BlobSink):
            n, gone = _blob(sink, state, recorded)
        elif isinstance(sink, TableSink):
            n, gone = _table(sink, state, recorded)
        else:  # an in-memory sink (tests): the ledger is all there is
            n, gone = state.rows, []
        rows.append(n)
        problems.extend(f"sink {index}: {g}" for g in gone)
    return rows, problems


def _blob(sink: BlobSink, state: WindowState, recorded: set[str]) -> tuple[int | None, list[str]]:
    doc = sink._read_json(sink.manifest_name(state.window))  # the sink's own manifest reader
    if doc is None:
        return None, []
    listed = {str(f["name"]) for f in doc.get("files", []) if isinstance(f, dict) and "name" in f}
    gone = [f"ledger output {n} is not in the manifest" for n in sorted(recorded - listed)]
    for name in sorted(listed | recorded):
        try:
            exists = sink.container.get_blob_client(name).exists()
        except AzureError as exc:
            raise translate(exc, f"checking {name}") from exc
        if not exists:
            gone.append(f"output blob {name} is missing")
    return int(doc.get("rows", 0)), gone


def _table(sink: TableSink, state: WindowState, recorded: set[str]) -> tuple[int | None, list[str]]:
    try:
        entity = sink.client.get_entity(sink.manifest_key(), state.window.key)
    except ResourceNotFoundError:
        return None, []
    except AzureError as exc:
        raise translate(exc, f"reading the manifest of {state.window}") from exc
    try:
        files: list[dict[str, Any]] = orjson.loads(entity.get("files", "[]"))
    except orjson.JSONDecodeError:
        files = []
    listed = {str(f["name"]) for f in files if isinstance(f, dict) and "name" in f}
    gone = [f"ledger output {n} is not in the manifest" for n in sorted(recorded - listed)]
    prefix = f"table:{sink.table_name}/"
    for name in sorted(listed | recorded):
        pk, _, part = name[len(prefix) :].partition("/") if name.startswith(prefix) else (name, "", "")
        try:
            found = next(
                iter(
                    sink.client.query_entities(
                        f"PartitionKey eq @pk and {PART} eq @part",
                        parameters={"pk": pk, "part": part or "main"},
                        select=["RowKey"],
                        results_per_page=1,
                    )
                ),
                None,
            )
        except AzureError as exc:
            raise translate(exc, f"checking {name}") from exc
        if found is None:
            gone.append(f"output {name} has no entities")
    rows = entity.get("rows", 0)  # an Int64 property comes back as an EntityProperty
    return int(getattr(rows, "value", rows) or 0), gone
