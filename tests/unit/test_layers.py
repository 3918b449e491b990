"""The package layers and the absence of import cycles (pyproject.toml ``[tool.importlinter]``) hold: a
front end may use the composition root, which may use the engine and the operator tools, …, never the
reverse; no two modules of one package import each other in a circle (TYPE_CHECKING included)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", done.stdout)
    assert kept and int(kept.group(1)) >= 3 and kept.group(2) == "0", done.stdout[-2000:]


def test_the_engine_never_imports_the_functions_host():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "shared").rglob("*.py")
        if re.search(r"^\s*(from azure\.functions|import azure\.functions)", p.read_text(), re.M)
    ]
    assert offenders == []
