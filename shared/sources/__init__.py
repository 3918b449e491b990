"""Sources: one module per kind behind the ``Source`` protocol."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.sources.base import (
    LateAwareSource,
    LatePlan,
    Prefetched,
    PrefetchingSource,
    Source,
    SourceSummary,
    SteppedSource,
)

if TYPE_CHECKING:
    import httpx

    from shared.runtime.auth import HeaderProvider
    from shared.settings import Settings, SourceConfig

__all__ = [
    "LateAwareSource",
    "LatePlan",
    "Prefetched",
    "PrefetchingSource",
    "Source",
    "SourceSummary",
    "SteppedSource",
    "build_source",
]


def build_source(
    config: SourceConfig,
    *,
    pipeline: str,
    settings: Settings,
    http: httpx.Client,
    headers: HeaderProvider | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Source:
    """The adapter for ``config.kind``; query sources share ``http`` (pool), ``headers`` (token cache)
    and the query budget of their identity (``shared.budget.registry``)."""
    from shared.settings import QuerySourceConfig

    if isinstance(config, QuerySourceConfig):
        from shared.budget.registry import budget_for
        from shared.runtime.auth import HeaderProvider
        from shared.sources.query_api import QueryApiSource

        budget = budget_for(config, settings)  # one per identity + endpoint, shared app-wide via storage
        return QueryApiSource(
            config, http, headers or HeaderProvider(config.auth), sleep=sleep, budget=budget, pipeline=pipeline
        )
    from shared.sources.export_blobs import ExportBlobSource

    return ExportBlobSource(
        config, pipeline=pipeline, state=settings.state, quarantine_container=settings.quarantine_container
    )
