"""How much memory this instance has, and the default per-process byte budget derived from it (read
once, with the settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["default_budget_mb", "instance_memory_mb"]

_MAX_INSTANCE_MB = 4096  # the largest Flex Consumption instance
_MIN_BUDGET_MB = 16


def _cgroup_limit_mb() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text) // 2**20
    return None


def instance_memory_mb(env: Mapping[str, str]) -> int:
    """The memory this instance has: ``MOVER_INSTANCE_MEMORY_MB``, the cgroup limit, or the machine's."""
    raw = env.get("MOVER_INSTANCE_MEMORY_MB", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    limit = _cgroup_limit_mb()
    if limit:
        return limit
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 2048


def default_budget_mb(env: Mapping[str, str]) -> int:
    """1/64 of the instance's memory (at most 4,096 MB counted), at least 16 MB."""
    return max(_MIN_BUDGET_MB, min(instance_memory_mb(env), _MAX_INSTANCE_MB) // 64)
