"""``make bench``: the 1M-row hour moved end to end, against the raw-limit baseline.

``bench.run`` orchestrates (Azurite and the query API emulator as separate processes,
every scenario in its own subprocess so peak RSS is per scenario); ``bench.scenarios``
holds what is measured; ``bench.stack`` starts and drives the processes and counts
output rows back; ``bench.scheduler`` measures a tick over a large ledger.
See docs/performance.md. ``make bench-scale`` (``bench.scale``, ``bench.scale_runs``): the
queue backfill with 1/2/4 worker processes, sequential vs parallel sub-queries and the plan
cost over a year, against an emulator with service time and the 5-query cap; docs/scale.md.
"""

from __future__ import annotations

__all__: list[str] = []
