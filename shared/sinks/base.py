"""The sink port: one writer per (window, part), committed atomically."""

from __future__ import annotations

from typing import Protocol

from shared.model import Batch, OutputFile, Window

__all__ = ["Sink", "SinkWriter"]


class SinkWriter(Protocol):
    """Receives batches; nothing is visible to readers before ``commit``."""

    def write(self, batch: Batch) -> None: ...

    def commit(self) -> list[OutputFile]:
        """Make the output visible at its deterministic name(s), replacing an earlier run's."""
        ...

    def abort(self) -> None:
        """Drop what was written; the previous committed output (if any) stays."""
        ...


class Sink(Protocol):
    def open(self, window: Window, *, part: str = "") -> SinkWriter:
        """A writer for ``window``; ``part`` distinguishes extra deterministic parts (late data)."""
        ...
