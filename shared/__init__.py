"""insights-mover engine: App Insights telemetry → your storage, window by window.

Imports no ``azure.functions``: the function app, the CLI and the tests share this code.
Public names load lazily so that importing one module (``shared.model``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

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
