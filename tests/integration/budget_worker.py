"""A separate process that uses a query budget (for test_budget*.py): its own client, its own clock.

``python -m tests.integration.budget_worker CONN TABLE KEY CONCURRENT REQUESTS PERIOD MODE N [TTL [HANDOFF]]``

MODE ``hold``: take N slots in turn, each held ``0.05`` s; print one JSON line per hold with the
grant time (the one the shared rate log recorded) and the enter/exit times of the holder's own
bookkeeping. MODE ``block``: take one slot, print ``held``, then never let go (to be killed).
"""

from __future__ import annotations

import json
import sys
import threading
import time

from azure.data.tables import TableServiceClient

from shared.budget.slots import Budget, Limits


def main(argv: list[str]) -> int:
    conn, table, key, concurrent, requests, period, mode, n = argv[:8]
    ttl = float(argv[8]) if len(argv) > 8 else 15.0
    handoff = float(argv[9]) if len(argv) > 9 else 0.0
    client = TableServiceClient.from_connection_string(conn).get_table_client(table)
    limits = Limits(int(concurrent), int(requests), float(period))
    budget = Budget(client, key, limits, ttl=ttl, max_wait=60.0, poll=(0.02, 0.2), handoff=handoff)
    if mode == "block":
        budget.acquire()
        print("held", flush=True)
        threading.Event().wait()
        return 0
    for _ in range(int(n)):
        with budget.slot() as hold:
            entered = time.time()
            threading.Event().wait(0.05)  # the "query"
            left = time.time()
        print(json.dumps({"granted": hold.granted_at, "enter": entered, "exit": left}), flush=True)
    budget.flush()
    print(json.dumps({"counts": budget.counts().as_dict()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
