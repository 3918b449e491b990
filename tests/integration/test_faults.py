"""The fault suite, small, in the app's scaled-out shape: the randomized queue run of ``make fault`` with
``SMALL_QUEUE`` figures; every row checked, every replay checked, the recovery and the queue depth measured.

Same code as ``make fault`` (``devtools.faultsuite --queue``): one or two planner processes and three queue
workers, 6 SIGKILLs of workers and 3 of planners (at random moments, or right after a queue mark whose
message is not sent yet), two workers frozen past their lease (never all at once), one Azurite restart,
query faults (429/503/504, resets, cut bodies, forced truncation, E_OVERFLOW and Warning partial errors),
re-sweeps of every done window all the time, copies of waiting messages, messages of done windows sent
again, a message deleted right after it was enqueued, one window whose message fails every delivery until
it lands on the poison queue, one window the service fails with E_OVERFLOW until it is closed — and
operator replays through the real CLI (``python -m shared replay``, inline and queued, one of them killed
mid-run), the last one followed by a SIGKILL of the worker running it and of a planner. It starts its own
Azurite (on disk, so data survives the restart) and its own emulator process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.faultsuite import SMALL_QUEUE, run_suite


@pytest.mark.fault
def test_small_fault_suite_moves_every_row_exactly_once(tmp_path: Path) -> None:
    config = SMALL_QUEUE
    lines: list[str] = []
    result = run_suite(config, workdir=tmp_path, say=lines.append)
    report = "\n".join([*lines[-40:], *result.verdict.problems, *result.failures, result.details_line(),
                        result.faults_line()])  # fmt: skip
    verdict = result.verdict
    assert verdict.lost == 0 and verdict.duplicated == 0, report
    assert verdict.windows == len(config.tables) * config.hours == verdict.windows_done, report
    assert verdict.rows_out == verdict.rows_source > 0, report
    assert not (verdict.foreign or verdict.misplaced or verdict.mismatched), report
    assert not (verdict.stray_blobs or verdict.ledger_mismatches), report
    assert len(result.kills) >= config.min_kills >= 5, report
    assert len(result.freezes) == config.freezes and result.storage_restarts == 1, report
    assert result.throttled >= 2 and result.splits_logged > 0, report  # the faults really happened
    queue = result.queue
    assert queue["duplicates"] == config.duplicates and queue["lost"] == config.lost, report
    assert queue["stale"] == config.stale and queue["stale_at_end"] > 0, report
    assert queue["poisoned"] == queue["poison_replayed"] == config.poison, report
    assert queue["poison_deliveries"] >= config.max_dequeue, report  # every delivery failed before the poison queue
    assert queue["ignored_logged"] > 0, report  # duplicates and late messages found nothing to do
    # planners killed, two at once at times
    assert len(result.planner_kills) >= config.planner_kills + 1 and result.planners["most_at_once"] == 2, report
    # replays through the CLI: each accepted one checked against the final ledger, one CLI killed mid-run
    settled = result.settled
    assert settled is not None, report
    assert sum(1 for r in result.replays if r.why == "random") >= config.replays, report
    assert {r.why for r in result.replays} >= {"random", "poison", "overflow", "final"}, report
    assert settled.replays_checked >= config.replays and not settled.replay_problems, report
    assert result.replay_kills >= config.replay_kills, report
    assert not any(r.problem for r in result.replays), report
    # every window ended done; the overflow window was closed by the service first, then replayed
    assert settled.statuses == {"done": verdict.windows} and not settled.stuck, report
    assert result.overflows_served >= config.max_attempts, report
    # recovery from the last fault (the strike) within lease + visibility; the depth within its bound
    assert settled.last_fault.startswith("final strike") and 0 < settled.recovery_s <= settled.recovery_bound_s, report
    depth = result.depth
    assert depth is not None and depth.samples > 50 and not depth.over and not depth.early, report
    assert 0 < depth.max_app <= depth.bound == len(config.tables) * config.max_per_tick * 2, report
    assert result.ok, report
