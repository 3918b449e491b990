"""The sink port: one writer per (window, part), committed atomically, then a manifest."""

from __future__ import annotations

from typing import Any, Protocol

from shared.model import Batch, OutputFile, Window

__all__ = ["Sink", "SinkWriter"]


class SinkWriter(Protocol):
    """Receives batches; nothing is visible to readers before ``commit``."""

    def write(self, batch: Batch) -> None: ...

    def commit(self) -> list[OutputFile]:
        """Make the output visible at its deterministic name(s), replacing an earlier run's.

        A part with zero rows commits no file and removes one an earlier run left at
        that name, so outputs always match the latest run.
        """
        ...

    def abort(self) -> None:
        """Drop what was written; the previous committed output (if any) stays."""
        ...


class Sink(Protocol):
    def open(self, window: Window, *, part: str = "") -> SinkWriter:
        """A writer for ``window``; ``part`` distinguishes extra deterministic parts (late data)."""
        ...

    def write_manifest(self, window: Window, outputs: list[OutputFile], info: dict[str, Any]) -> OutputFile:
        """Record that ``window`` is complete with exactly ``outputs`` (all of its parts).

        Called last, after every part is committed; called again (replacing it) when a
        late part is added. ``info`` is free-form JSON-able context from the runner.
        Outputs without ``extra["columns"]`` (e.g. rebuilt from the ledger) get their
        columns from this process's recent commits or from the window's previous manifest.
        """
        ...

    def output_name(self, window: Window, part: str = "") -> str:
        """The name ``open(window, part=part)`` commits under (what ``remove`` takes)."""
        ...

    def remove(self, name: str) -> None:
        """Delete an output this sink committed earlier (a name from ``OutputFile.name``);
        a missing one is fine. Used when a full rerun supersedes earlier late parts."""
        ...
