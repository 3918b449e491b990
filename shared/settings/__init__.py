"""Settings: app settings + pipeline JSON → one validated, frozen ``Settings`` object.

Built once at the edge (function app start, CLI start) from the environment the
Functions host provides. Every problem is collected and reported together in a
``ConfigError`` naming the pipeline, the field and the fix. Secrets are resolved
here and kept out of ``repr``. ``model`` holds the dataclasses; ``app``, ``sources``
and ``sinks`` parse their sections.
"""

from shared.settings.app import load_settings
from shared.settings.model import (
    DEFAULT_ENDPOINTS,
    DEFAULT_PATH,
    AuthConfig,
    ExportSourceConfig,
    Pipeline,
    QuerySourceConfig,
    Settings,
    SinkConfig,
    SourceConfig,
    StorageConfig,
    WindowConfig,
    load_local_settings,
)

__all__ = [
    "DEFAULT_ENDPOINTS",
    "DEFAULT_PATH",
    "AuthConfig",
    "ExportSourceConfig",
    "Pipeline",
    "QuerySourceConfig",
    "Settings",
    "SinkConfig",
    "SourceConfig",
    "StorageConfig",
    "WindowConfig",
    "load_local_settings",
    "load_settings",
]
