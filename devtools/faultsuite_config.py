"""The fault suite's figures: ``FULL`` and ``SMALL`` (inline runners), ``FULL_QUEUE`` and ``SMALL_QUEUE``
(the randomized queue-mode run: planners and workers, replays, re-sweeps, queue faults)."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["FULL", "FULL_QUEUE", "SMALL", "SMALL_QUEUE", "SuiteConfig"]


@dataclass(frozen=True)
class SuiteConfig:
    """Figures of one run. ``FULL`` is ``make fault``; ``SMALL`` runs in ``make test``."""

    tables: tuple[str, ...] = ("requests", "dependencies", "traces")  # one pipeline per table
    hours: int = 16  # hourly windows per pipeline
    rows_per_hour: tuple[int, int] = (1000, 12000)  # uniform per (table, hour)
    runners: int = 2  # runner processes at once: their claims race on ETags
    kills: int = 24  # planned; kills armed when the backfill ends do not happen …
    min_kills: int = 20  # … so the run fails only below this
    kills_by: float = 0.0  # > 0: arm kills in step with progress, all by this fraction of windows done; 0: at once
    kill_after: tuple[float, float] = (1.0, 4.0)  # kills from outside: seconds after arming
    freezes: int = 3  # SIGSTOP a runner mid-window (before a commit or a manifest, after a query) past its lease,
    freeze_for: float = 12.0  # then SIGCONT: a live owner whose windows others took over (seconds; > 2 leases)
    nth_max: int = 12  # a fault point kills at its n-th pass, n ≤ this (see _NTH)
    point_timeout: float = 6.0  # an armed fault point not reached by then (storage up) → killed from outside
    max_rows: int = 3000  # emulator result cap: more rows come back as PartialError
    max_rows_per_query: int = 5000  # engine sub-window (checkpoint step) size: above max_rows on purpose
    fault_rates: tuple[tuple[str, float], ...] = (
        ("429", 0.04), ("503", 0.03), ("504", 0.01), ("partial", 0.04), ("reset", 0.01), ("truncate", 0.01),
    )  # fmt: skip
    storage_outage_at: float = 0.4  # fraction of windows done when Azurite is stopped …
    storage_down: float = 6.0  # … and seconds until it is started again (longer than the lease)
    lease: str = "PT5S"
    checkpoint_after: str = "PT0.2S"  # MOVER_CHECKPOINT_AFTER: long windows pause and resume (chunk parts) often
    concurrency: int = 3
    max_per_tick: int = 4
    max_attempts: int = 100  # inline: generous; the queue run uses the default 5 (takeovers and outages are free)
    resweep_lookback: str = ""  # e.g. "P1D": every done window is re-counted all the time (queue run)
    seed: int = 20261102
    deadline: float = 480.0  # seconds for the backfill; unfinished windows then fail the run
    progress_every: float = 2.0
    # queue mode (devtools.faultsuite_queue): planners + workers on the work queue, and its faults
    queue: bool = False
    planners: int = 2  # planner processes at most at once (one or two, changing every planner_phase s)
    planner_phase: tuple[float, float] = (3.0, 9.0)
    planner_kills: int = 0  # SIGKILLs of planner processes (at random moments, or right after a queue mark)
    planner_kill_after: tuple[float, float] = (0.5, 4.0)
    duplicates: int = 6  # copies of waiting messages sent
    stale: int = 8  # messages of done windows sent again (half mid-run, the rest at the end)
    lost: int = 3  # messages deleted right after they were enqueued
    poison: int = 1  # windows whose message fails every delivery until the suite lifts it and replays
    # seconds a taken message stays invisible: the host's 10 minutes. The lease is scaled down 120× (PT10M → PT5S),
    # this only 20×: a window's run is not scaled (seconds here, waits behind sweeps included), and it must stay
    # well within lease + visibility, as it does in Azure
    queue_visibility: float = 30.0
    retry_after: int = 1  # seconds a failed message stays invisible
    max_dequeue: int = 3  # deliveries before the poison queue
    # the operator (devtools.faultsuite_operator): replays through the CLI, windows the service fails
    replays: int = 0  # `python -m shared replay` runs at random moments (inline or queued, 1–2 windows)
    replay_kills: int = 0  # of the inline ones: the CLI dies at a fault point mid-run
    overflow: int = 0  # windows whose every query the emulator answers E_OVERFLOW (window-caused) …
    overflow_left: int = 0  # … of which left closed at the end; the others are lifted and replayed
    final_strike: bool = False  # after the backfill: replay, SIGKILL the worker running it and a planner
    depth_every: float = 0.2  # seconds between samples of the work queue's message count


FULL = SuiteConfig()
SMALL = SuiteConfig(
    tables=("requests", "traces"), hours=8, rows_per_hour=(1000, 10000), runners=3, kills=6, min_kills=5, freezes=2,
    nth_max=1,
    kill_after=(0.5, 3.0), point_timeout=6.0, storage_outage_at=0.5, storage_down=4.0, deadline=240.0,
    progress_every=5.0,
)  # fmt: skip
_QUEUE_RATES = (
    ("429", 0.04), ("503", 0.03), ("504", 0.01), ("partial", 0.04), ("reset", 0.01), ("truncate", 0.01),
    ("overflow", 0.002), ("warning", 0.01),
)  # fmt: skip
FULL_QUEUE = replace(
    FULL, queue=True, runners=3, seed=20261202, kills_by=0.85, max_attempts=5, resweep_lookback="P1D",
    fault_rates=_QUEUE_RATES, planner_kills=8, replays=12, replay_kills=2, overflow=2, overflow_left=1,
    final_strike=True,
)  # fmt: skip
SMALL_QUEUE = replace(
    SMALL, queue=True, rows_per_hour=(1000, 8000), duplicates=4, stale=6, lost=1, seed=20261202, kills_by=0.8,
    max_attempts=5, resweep_lookback="P1D", fault_rates=_QUEUE_RATES, planner_kills=3, replays=3, replay_kills=1,
    overflow=1, final_strike=True,
)  # fmt: skip
