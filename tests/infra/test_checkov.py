"""checkov over infra/: no failed check, and every suppression is inline, used and explained."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from tests.infra import bicep

CHECKOV = bicep.ROOT / ".venv-checkov" / "bin" / "checkov"
# Resource types checkov has checks for: a template declaring one must show up in the report.
CHECKED_TYPES = (
    "Microsoft.Storage/storageAccounts",
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Web/sites",
)
SKIP = re.compile(r"//\s*checkov:skip=(?P<id>CKV2?_[A-Z]+_\d+)(?::(?P<reason>.*))?$")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is missing at {CHECKOV}: `make test` installs it (or `make .venv-checkov/bin/checkov`)")
    proc = subprocess.run(
        [str(CHECKOV), "-d", "infra", "--framework", "bicep", "--skip-download", "-o", "json"],
        cwd=bicep.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON (exit {proc.returncode}): {proc.stderr[-2000:]}")
    results = data[0] if isinstance(data, list) else data
    assert results.get("check_type") == "bicep", f"checkov found no Bicep to check: {str(results)[:500]}"
    return results


def test_checkov_reads_every_template(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    checked = {
        c["file_path"].lstrip("/")
        for key in ("passed_checks", "failed_checks", "skipped_checks")
        for c in report["results"][key]
    }
    declared = re.compile(rf"^resource \w+ '({'|'.join(map(re.escape, CHECKED_TYPES))})@[^']+' = ", re.MULTILINE)
    expected = {str(p.relative_to(bicep.INFRA)) for p in bicep.bicep_files() if declared.search(p.read_text("utf-8"))}
    assert "resources.bicep" in expected
    assert expected <= checked, f"checkov checked nothing in {sorted(expected - checked)}"


def test_checkov_finds_no_failed_check(report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['check_name']} — {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "fix these, or suppress one inline with `//checkov:skip=ID:reason`:\n" + "\n".join(failed)


def test_every_suppression_is_used_and_gives_a_reason(report: dict[str, Any]) -> None:
    used = {(c["check_id"], c["file_path"].lstrip("/")) for c in report["results"]["skipped_checks"]}
    written = set()
    for path in bicep.bicep_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            m = SKIP.search(line.strip())
            if m:
                reason = (m.group("reason") or "").strip()
                assert len(reason.split()) >= 6, f"{path.name}: {m.group('id')} needs a real reason, got {reason!r}"
                written.add((m.group("id"), str(path.relative_to(bicep.INFRA))))
    assert used <= written, f"skips not written inline: {sorted(used - written)}"
    assert written <= used, f"suppressions that suppress nothing (remove them): {sorted(written - used)}"
