"""Which shared query budget a pipeline uses: one per identity + endpoint, one object per process.

Pipelines that query with the same identity (auth kind + client id or key *setting name*) at the
same endpoint share one budget, because the service counts per identity. When they disagree on
the limits, the smallest wins (logged once): the identity's real limit is one number.
"""

from __future__ import annotations

import logging
import threading

from shared.budget.slots import Budget
from shared.budget.state import Limits, budget_key
from shared.settings import QuerySourceConfig, Settings

__all__ = ["budget_for", "budget_table", "flush_budgets", "key_of", "limits_for"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_budgets: dict[tuple[object, ...], Budget] = {}
_warned: set[str] = set()


def budget_table(settings: Settings) -> str:
    """The budget's table, beside the ledger in the state account (``<ledger table>budget``)."""
    return f"{settings.ledger_table[:57]}budget"


def key_of(config: QuerySourceConfig) -> str:
    auth = config.auth
    return budget_key(auth.kind, auth.client_id or auth.setting, config.endpoint)


def limits_for(config: QuerySourceConfig, settings: Settings) -> Limits:
    """The smallest limits among the pipelines sharing ``config``'s budget key."""
    key = key_of(config)
    sharing = [config] + [
        p.source for p in settings.pipelines if isinstance(p.source, QuerySourceConfig) and key_of(p.source) == key
    ]
    concurrent = {s.max_concurrent_queries for s in sharing}
    requests = {s.max_requests_per_30s for s in sharing}
    limits = Limits(max_concurrent=min(concurrent), max_requests=min(requests))
    if (len(concurrent) > 1 or len(requests) > 1) and key not in _warned:
        _warned.add(key)
        names = sorted(p.name for p in settings.pipelines if p.source in sharing)
        log.warning(
            "pipelines %s share one query identity and endpoint but set different limits; using the smallest:"
            " max_concurrent_queries=%d, max_requests_per_30s=%d",
            ", ".join(names),
            limits.max_concurrent,
            limits.max_requests,
        )
    return limits


def budget_for(config: QuerySourceConfig, settings: Settings) -> Budget:
    """The process's budget object for ``config``'s identity + endpoint (thread-safe, cached)."""
    from shared.runtime.storage import table_service

    table = budget_table(settings)
    key = key_of(config)
    limits = limits_for(config, settings)
    handoff = settings.query_handoff_ms / 1000  # ``MOVER_QUERY_HANDOFF_MS``: see shared.budget.handoff
    cache_key = (settings.state, table, key, limits, handoff)
    with _lock:
        budget = _budgets.get(cache_key)
        if budget is None:
            budget = Budget(table_service(settings.state).get_table_client(table), key, limits, handoff=handoff)
            _budgets[cache_key] = budget
        return budget


def flush_budgets() -> None:
    """Free the slots every budget of this process keeps warm (before the process stops)."""
    with _lock:
        budgets = list(_budgets.values())
    for budget in budgets:
        budget.flush()
