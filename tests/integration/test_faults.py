"""The fault suite, small, in the app's scaled-out shape: two planner processes and three queue
workers; kills, freezes, throttling, truncation, a storage outage and the queue's own faults
(duplicate, late, lost and poison messages); every row checked.

Same code as ``make fault`` (``devtools.faultsuite``) with ``SMALL_QUEUE`` figures: 6 SIGKILLs of
workers, two workers frozen past their lease (never all at once), one Azurite restart, copies of
waiting messages, messages of done windows sent again, messages deleted right after they were
enqueued, and one window whose message fails every delivery until it lands on the poison queue
and is replayed. It starts its own Azurite (on disk, so data survives the restart) and its own
emulator process. ``make fault`` runs the larger inline and queue versions.
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
    report = "\n".join([*lines[-40:], *result.verdict.problems, result.details_line(), result.faults_line()])
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
    assert queue["planners"] == 2, report
    assert queue["duplicates"] == config.duplicates and queue["lost"] == config.lost, report
    assert queue["stale"] == config.stale and queue["stale_at_end"] > 0, report
    assert queue["poisoned"] == queue["poison_replayed"] == config.poison, report
    assert queue["poison_deliveries"] >= config.max_dequeue, report  # every delivery failed before the poison queue
    assert queue["ignored_logged"] > 0, report  # duplicates and late messages found nothing to do
    assert result.ok, report
