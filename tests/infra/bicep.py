"""Just enough reading of the project's own Bicep and docs to compare them with the code.

Not a Bicep parser: it reads the few shapes ``infra/main.bicep`` uses on purpose (a ``var``
object of app settings, a ``var`` object of role IDs, ``param x type = default`` lines) and
fails loudly when a shape is missing, so a refactor of the template shows up here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"  # subscription scope: parameters users set, the resource group, outputs
RESOURCES = INFRA / "resources.bicep"  # everything inside the resource group
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
    block = strip_comments(var_block(RESOURCES.read_text(encoding="utf-8"), "appSettings"))
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
    """The default expression of ``param <name> <type> = <default>`` in main.bicep (what users get)."""
    m = re.search(rf"^param {name} \w+ = (.+)$", MAIN.read_text(encoding="utf-8"), re.MULTILINE)
    if m is None:
        raise AssertionError(f"main.bicep has no `param {name} ... = default`")
    return m.group(1).strip()


@dataclass(frozen=True)
class Param:
    """One ``param`` line with the decorator lines right above it."""

    name: str
    type: str
    default: str | None
    decorators: tuple[str, ...]

    def decorator(self, name: str) -> str | None:
        """The argument text of ``@name(...)``, or None."""
        for line in self.decorators:
            m = re.fullmatch(rf"@{name}\((.*)\)", line)
            if m:
                return m.group(1)
        return None


def params(path: Path) -> dict[str, Param]:
    """Every ``param`` of a template, in order, with its decorators."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[str, Param] = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"param (\w+) (\w+)(?: = (.+))?", line.strip())
        if m is None:
            continue
        decorators: list[str] = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith(("@", "//")):
            if lines[j].strip().startswith("@"):
                decorators.insert(0, lines[j].strip())
            j -= 1
        found[m.group(1)] = Param(m.group(1), m.group(2), m.group(3), tuple(decorators))
    return found


def _brackets(text: str, start: int = 0) -> Iterator[tuple[int, int]]:
    """(offset, +1 or -1) of every bracket from ``start`` on, outside strings and ``//`` comments."""
    quoted, i = False, start
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == "'":
                quoted = False
        elif ch == "'":
            quoted = True
        elif text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                return
            continue
        elif ch in "{[":
            yield i, 1
        elif ch in "}]":
            yield i, -1
        i += 1


def block_at(text: str, start: int) -> str:
    """The ``{...}`` or ``[...]`` opening at or after ``start``, brackets balanced outside strings and comments."""
    begin = min(j for j in (text.find("{", start), text.find("[", start)) if j >= 0)
    depth = 0
    for i, step in _brackets(text, begin):
        depth += step
        if depth == 0:
            return text[begin : i + 1]
    raise AssertionError(f"unbalanced block at offset {begin}")


def resources(path: Path, type_prefix: str) -> dict[str, str]:
    """Symbolic name → declaration line + body of every resource whose type starts with ``type_prefix``."""
    text = path.read_text(encoding="utf-8")
    found = {}
    for m in re.finditer(rf"^resource (\w+) '({re.escape(type_prefix)}[^'@]*)@[^']+' = [^\n]*$", text, re.MULTILINE):
        found[m.group(1)] = text[m.start() : m.end() - 1] + block_at(text, m.end() - 1)
    return found


def modules(path: Path) -> dict[str, str]:
    """Symbolic name → declaration line + body of every ``module``."""
    text = path.read_text(encoding="utf-8")
    return {
        m.group(1): text[m.start() : m.end() - 1] + block_at(text, m.end() - 1)
        for m in re.finditer(r"^module (\w+) '[^']+' = [^\n]*$", text, re.MULTILINE)
    }


def _depth_change(line: str) -> int:
    """Brackets opened minus closed on one line, outside strings and comments."""
    return sum(step for _, step in _brackets(line))


def object_keys(block: str) -> list[str]:
    """Top-level keys of a multi-line Bicep object ``{ ... }`` (one key a line, as the templates are written)."""
    lines = block.strip().splitlines()
    assert lines[0].rstrip().endswith("{") and lines[-1].strip() == "}", block[:120]
    keys, depth = [], 0
    for line in lines[1:-1]:
        if depth == 0:
            m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*|'[^']*')\s*:", line)
            if m:
                keys.append(m.group(1).strip("'"))
        depth += _depth_change(line)
    return keys


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
