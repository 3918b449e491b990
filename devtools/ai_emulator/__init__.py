"""Local emulator of the Application Insights / Log Analytics query API.

A dev tool (never imported by ``shared/``, never importing it): the HTTP API with the
real URL shapes, auth, limits, PartialError, throttling and OneAPI errors; a KQL subset;
a late-data-aware telemetry store with a seeded generator; fault injection; a control
API; and a benchmark. See ``Emulator`` for the in-process API and ``__main__`` for the CLI.
"""

from __future__ import annotations

from .bench import BenchResult, fetch_window, self_benchmark
from .emulator import Clock, EmulatorConfig, EmulatorCore, EmulatorStats, SettableClock
from .faults import Fault, FaultInjector, ScopedFault
from .kql import KqlError, KqlSemanticError, KqlSyntaxError
from .query import OutCol, QueryResult
from .schema import CLASSIC_TABLES, WORKSPACE_TABLES
from .service import Emulator

__all__ = [
    "CLASSIC_TABLES",
    "WORKSPACE_TABLES",
    "BenchResult",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "EmulatorCore",
    "EmulatorStats",
    "Fault",
    "FaultInjector",
    "KqlError",
    "KqlSemanticError",
    "KqlSyntaxError",
    "OutCol",
    "QueryResult",
    "ScopedFault",
    "SettableClock",
    "fetch_window",
    "self_benchmark",
]
