"""``make bench``: the 1M-row hour moved end to end, against the raw-limit baseline.

``bench.run`` orchestrates (Azurite and the query API emulator as separate processes,
every scenario in its own subprocess so peak RSS is per scenario); ``bench.scenarios``
holds what is measured; ``bench.stack`` starts and drives the processes and counts
output rows back; ``bench.scheduler`` measures a tick over a large ledger.
See docs/performance.md.
"""

from __future__ import annotations

__all__: list[str] = []
