"""Process-wide allocator settings for a worker that streams large buffers (call once, early)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["tune_allocators"]

log = logging.getLogger(__name__)
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameters
_M_ARENA_MAX = -8
_done = False


def tune_allocators() -> None:
    """Give freed multi-MB buffers back to the OS at once; idempotent, best effort.

    glibc raises its mmap threshold to the size of the largest buffer freed so far (up to
    32 MB), after which response bodies, encoded chunks and upload blocks come from the
    heap and stay in RSS between windows; a fixed 128 KiB threshold keeps them mmapped. It
    also gives each thread its own arena (up to 8 per core), whose freed pieces stay in RSS:
    two arenas keep ~50 MB less at the peak of a window, at no measurable cost in speed.
    Arrow's default pool (mimalloc) likewise keeps freed pages; the system pool does not.
    polars' jemalloc (configured by this variable before polars loads; ``shared.sources.wire_arrow``
    imports it lazily) gets one arena (not one per core): answers are decoded one piece of ~2 MiB
    at a time (~12 MB of polars memory), and those pages are kept for reuse (decay 10 s) rather
    than returned and faulted in again for every piece (docs/performance.md, "Memory").
    """
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1,dirty_decay_ms:10000,muzzy_decay_ms:0")
    name = ctypes.util.find_library("c")
    try:
        if name and "libc.so" in name:
            libc = ctypes.CDLL(name)
            libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
            libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        log.debug("mallopt not available", exc_info=True)
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
