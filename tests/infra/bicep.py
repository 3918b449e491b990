"""Just enough reading of the project's own Bicep and docs to compare them with the code.

Not a Bicep parser: it reads the few shapes ``infra/main.bicep`` uses on purpose (a ``var``
object of app settings, a ``var`` object of role IDs, ``param x type = default`` lines) and
fails loudly when a shape is missing, so a refactor of the template shows up here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def strip_comments(text: str) -> str:
    """Drop ``//`` comments (none of the template's strings contain ``//`` outside URLs in descriptions)."""
    return "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in text.splitlines())


def var_block(text: str, name: str) -> str:
    """The body of ``var <name> = { ... }`` or ``var <name> = [ ... ]`` (brackets balanced)."""
    match = re.search(rf"^var {name} = [{{[]", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"main.bicep has no multi-line `var {name} = {{ ... }}` or `[ ... ]` block")
    depth, i = 1, match.end()
    while depth:
        if i >= len(text):
            raise AssertionError(f"`var {name}` block is not closed")
        depth += {"{": 1, "[": 1, "}": -1, "]": -1}.get(text[i], 0)
        i += 1
    return text[match.end() : i - 1]


def object_strings(block: str) -> dict[str, str]:
    """``key: 'literal'`` pairs of a Bicep object body."""
    pairs = re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*'([^']*)'", strip_comments(block), re.MULTILINE)
    return dict(pairs)


def app_settings() -> list[str]:
    """Names of the app settings ``main.bicep`` gives the function app (``{ name: '...', value: ... }`` items)."""
    block = strip_comments(var_block(MAIN.read_text(encoding="utf-8"), "appSettings"))
    items = [line.strip() for line in block.splitlines() if line.strip()]
    names = []
    for item in items:
        m = re.fullmatch(r"\{ name: '([^']+)', value: .+ \}", item)
        if m is None:
            raise AssertionError(
                f"unexpected line in `var appSettings`: {item!r} (one `{{ name: '...', value: ... }}` a line)"
            )
        names.append(m.group(1))
    return names


def param_default(name: str) -> str:
    """The default expression of ``param <name> <type> = <default>``."""
    m = re.search(rf"^param {name} \w+ = (.+)$", MAIN.read_text(encoding="utf-8"), re.MULTILINE)
    if m is None:
        raise AssertionError(f"main.bicep has no `param {name} ... = default`")
    return m.group(1).strip()


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def python_sources() -> list[Path]:
    """The engine and the trigger wiring: where app settings are read."""
    return [*sorted((ROOT / "shared").rglob("*.py")), ROOT / "function_app.py"]


def string_constants(path: Path) -> list[str]:
    """Every string literal of a module (f-string parts included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def markdown_table(text: str, header: list[str]) -> list[list[str]]:
    """Rows of the first Markdown table whose header cells are ``header`` (case-insensitive)."""
    lines = text.splitlines()
    want = [h.lower() for h in header]
    for i, line in enumerate(lines):
        cells = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        if cells == want:
            rows = []
            for row in lines[i + 2 :]:
                if not row.strip().startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table with header {header} found")
