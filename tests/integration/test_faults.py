"""The fault suite, small: kills, a freeze, throttling, truncation and a storage outage; every row checked.

Same code as ``make fault`` (``devtools.faultsuite``) with ``SMALL`` figures: three runner
processes, 6 SIGKILLs, two runners frozen past their lease (never all at once), one Azurite restart. It starts its
own Azurite (on disk, so data survives the restart) and its own emulator process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.faultsuite import SMALL, run_suite


@pytest.mark.fault
def test_small_fault_suite_moves_every_row_exactly_once(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_suite(SMALL, workdir=tmp_path, say=lines.append)
    report = "\n".join([*lines[-40:], *result.verdict.problems, result.details_line(), result.faults_line()])
    verdict = result.verdict
    assert verdict.lost == 0 and verdict.duplicated == 0, report
    assert verdict.windows == len(SMALL.tables) * SMALL.hours == verdict.windows_done, report
    assert verdict.rows_out == verdict.rows_source > 0, report
    assert not (verdict.foreign or verdict.misplaced or verdict.mismatched), report
    assert not (verdict.stray_blobs or verdict.ledger_mismatches), report
    assert len(result.kills) >= SMALL.min_kills >= 5, report
    assert len(result.freezes) == SMALL.freezes and result.storage_restarts == 1, report
    assert result.throttled >= 2 and result.splits_logged > 0, report  # the faults really happened
    assert result.ok, report
