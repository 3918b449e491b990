"""What the engine's components are built with: small callables the composition root (``shared.app``)
hands in, so a component never reaches for anything else (and a test builds only these)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeAlias

from shared.runtime.quarantine import Quarantine
from shared.settings import Pipeline
from shared.sinks.base import Sink
from shared.sources import Source

__all__ = ["Clock", "QuarantineFactory", "SinkFactory", "SourceFactory"]

Clock: TypeAlias = Callable[[], datetime]
SourceFactory: TypeAlias = Callable[[Pipeline], Source]  # a source for one pipeline's windows (cheap; per run)
SinkFactory: TypeAlias = Callable[[Pipeline], list[Sink]]  # the pipeline's sinks (kept per process)
QuarantineFactory: TypeAlias = Callable[[], Quarantine]  # where rows no sink can store are kept
