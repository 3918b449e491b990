"""insights-mover engine: App Insights telemetry → your storage, window by window.

Imports no ``azure.functions``: the function app, the CLI and the tests share this code.
Public names load lazily so that importing one module (``shared.model``) stays cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Arrow's C++ default memory pool (used inside the Parquet writer and other C++ code, whatever pyarrow's
# own default is) is chosen from this variable once, when pyarrow loads, so it is set here, before any
# module of the engine imports pyarrow. The system allocator gives freed pages back; mimalloc, the
# default, kept ~25 MB more per worker (docs/performance.md, "Memory"). A value set outside wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__all__ = [
    "App",
    "Batch",
    "Column",
    "ConfigError",
    "DataError",
    "FatalError",
    "MoverError",
    "OutputFile",
    "Pipeline",
    "ReplayResult",
    "RetriableError",
    "Settings",
    "TickReport",
    "Window",
    "WindowResult",
]

_HOME = {
    "shared.errors": ("ConfigError", "DataError", "FatalError", "MoverError", "RetriableError"),
    "shared.model": ("Batch", "Column", "OutputFile", "Window"),
    "shared.app": ("App", "ReplayResult", "TickReport", "WindowResult"),
    "shared.settings": ("Pipeline", "Settings"),
}


def __getattr__(name: str) -> Any:
    for module, names in _HOME.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'shared' has no attribute {name!r}")
