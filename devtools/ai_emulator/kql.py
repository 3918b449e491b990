"""A small KQL tokenizer and recursive-descent parser for the subset the emulator answers.

Grammar (everything else is a ``KqlSyntaxError``)::

    query     := IDENT ('|' stage)* [';']
    stage     := 'where' expr
               | 'summarize' agg (',' agg)* ['by' group (',' group)*]
               | 'project' proj (',' proj)*
               | ('take' | 'limit') INT
               | ('order' | 'sort') 'by' key (',' key)*
               | 'count'
    agg       := [IDENT '='] IDENT '(' [expr] ')'     -- count(), sum/avg/min/max(column) later
    group     := [IDENT '='] expr                     -- column or bin(column, timespan)
    proj      := [IDENT '='] IDENT
    key       := IDENT ['asc' | 'desc'] ['nulls' ('first' | 'last')]
    expr      := and ('or' and)*
    and       := cmp ('and' cmp)*
    cmp       := primary [('==' | '!=' | '<' | '<=' | '>' | '>=') primary]
    primary   := literal | IDENT | IDENT '(' [expr (',' expr)*] ')' | '(' expr ')'
    literal   := STRING | INT | REAL | TIMESPAN | 'datetime(' text ')' | true | false

Typing and name resolution happen in :mod:`.query`; this module only builds the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TLiteral

from .timeutil import TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE, TICKS_PER_SECOND, parse_datetime

__all__ = [
    "Agg",
    "Call",
    "ColumnRef",
    "Compare",
    "CountOp",
    "Expr",
    "Group",
    "KqlError",
    "KqlSemanticError",
    "KqlSyntaxError",
    "Lit",
    "Logical",
    "OrderBy",
    "Project",
    "Query",
    "SortKey",
    "Stage",
    "Summarize",
    "Take",
    "Where",
    "parse",
    "tokenize",
]


class KqlError(Exception):
    """A query the emulator refuses (maps to HTTP 400 BadArgumentError)."""

    kind = "SyntaxError"

    def __init__(self, message: str, pos: int = 0, token: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.token = token


class KqlSyntaxError(KqlError):
    kind = "SyntaxError"


class KqlSemanticError(KqlError):
    kind = "SemanticError"


# --- tokens ----------------------------------------------------------------------------------

TokKind = TLiteral["ident", "string", "int", "real", "timespan", "datetime", "op", "eof"]


@dataclass(frozen=True)
class Token:
    kind: TokKind
    text: str
    pos: int
    value: object = None


_OPS = ("==", "!=", "<>", "<=", ">=", "<", ">", "|", ",", "(", ")", "=", ";", "-")

# Kusto timespan suffixes → ticks per unit.
_SPAN_UNITS: dict[str, int] = {
    "d": TICKS_PER_DAY, "day": TICKS_PER_DAY, "days": TICKS_PER_DAY,
    "h": TICKS_PER_HOUR, "hr": TICKS_PER_HOUR, "hrs": TICKS_PER_HOUR,
    "hour": TICKS_PER_HOUR, "hours": TICKS_PER_HOUR,
    "m": TICKS_PER_MINUTE, "min": TICKS_PER_MINUTE, "minute": TICKS_PER_MINUTE,
    "minutes": TICKS_PER_MINUTE,
    "s": TICKS_PER_SECOND, "sec": TICKS_PER_SECOND, "second": TICKS_PER_SECOND,
    "seconds": TICKS_PER_SECOND,
    "ms": 10_000, "milli": 10_000, "millis": 10_000, "millisecond": 10_000,
    "milliseconds": 10_000,
    "microsecond": 10, "microseconds": 10,
    "tick": 1, "ticks": 1,
}  # fmt: skip

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def _is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_" or ch == "$"


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or ch == "$"


def _read_string(text: str, i: int) -> tuple[str, int]:
    """A '...' or "..." literal at ``text[i]`` (backslash escapes) → (value, end index)."""
    quote = text[i]
    j = i + 1
    out: list[str] = []
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            if j + 1 >= len(text) or text[j + 1] not in _ESCAPES:
                raise KqlSyntaxError("invalid escape in string literal", j, text[j : j + 2])
            out.append(_ESCAPES[text[j + 1]])
            j += 2
            continue
        if ch == quote:
            return "".join(out), j + 1
        if ch == "\n":
            break
        out.append(ch)
        j += 1
    raise KqlSyntaxError("unterminated string literal", i, text[i : i + 10])


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens; ``datetime(...)`` is read raw because its body is not KQL."""
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if text.startswith("//", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if ch in "\"'":
            value, j = _read_string(text, i)
            toks.append(Token("string", text[i:j], i, value))
            i = j
            continue
        if ch == "@" and i + 1 < n and text[i + 1] in "\"'":
            quote = text[i + 1]
            end = text.find(quote, i + 2)
            if end < 0:
                raise KqlSyntaxError("unterminated string literal", i, text[i : i + 10])
            toks.append(Token("string", text[i : end + 1], i, text[i + 2 : end]))
            i = end + 1
            continue
        if ch == "[" and i + 1 < n and text[i + 1] in "\"'":
            value, j = _read_string(text, i + 1)
            if j >= n or text[j] != "]":
                raise KqlSyntaxError("expected ']' after quoted name", j, text[j : j + 1])
            toks.append(Token("ident", value, i, "quoted"))
            i = j + 1
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            i = _number(text, i, toks)
            continue
        if _is_ident_start(ch):
            j = i + 1
            while j < n and _is_ident_char(text[j]):
                j += 1
            word = text[i:j]
            k = j
            while k < n and text[k].isspace():
                k += 1
            if word == "datetime" and k < n and text[k] == "(":
                close = text.find(")", k)
                if close < 0:
                    raise KqlSyntaxError("unterminated datetime literal", i, word)
                raw = text[k + 1 : close].strip()
                if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
                    raw = raw[1:-1]
                try:
                    ticks = parse_datetime(raw)
                except ValueError:
                    raise KqlSyntaxError(f"invalid datetime literal '{raw}'", i, text[i : close + 1]) from None
                toks.append(Token("datetime", text[i : close + 1], i, ticks))
                i = close + 1
                continue
            toks.append(Token("ident", word, i))
            i = j
            continue
        for op in _OPS:
            if text.startswith(op, i):
                toks.append(Token("op", op, i))
                i += len(op)
                break
        else:
            raise KqlSyntaxError(f"unexpected character '{ch}'", i, ch)
    toks.append(Token("eof", "", n))
    return toks


def _number(text: str, i: int, toks: list[Token]) -> int:
    n = len(text)
    j = i
    while j < n and text[j].isdigit():
        j += 1
    is_real = False
    if j < n and text[j] == "." and j + 1 < n and text[j + 1].isdigit():
        is_real = True
        j += 1
        while j < n and text[j].isdigit():
            j += 1
    if j < n and text[j] in "eE" and not (j + 1 < n and text[j + 1].isalpha()):
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit():
            is_real = True
            j = k
            while j < n and text[j].isdigit():
                j += 1
    num = text[i:j]
    k = j
    while k < n and text[k].isalpha():
        k += 1
    unit = text[j:k]
    if unit:
        if unit not in _SPAN_UNITS:
            raise KqlSyntaxError(f"invalid literal '{text[i:k]}'", i, text[i:k])
        whole, _, frac = num.partition(".")
        mult = _SPAN_UNITS[unit]
        ticks = int(whole) * mult + (int(frac) * mult // 10 ** len(frac) if frac else 0)
        toks.append(Token("timespan", text[i:k], i, ticks))
        return k
    if is_real:
        toks.append(Token("real", num, i, float(num)))
    else:
        toks.append(Token("int", num, i, int(num)))
    return j


# --- syntax tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    """A literal; ``type`` is a KQL scalar type (datetime/timespan values are ticks)."""

    value: object
    type: str
    pos: int


@dataclass(frozen=True)
class ColumnRef:
    name: str
    pos: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    pos: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Expr
    right: Expr
    pos: int


@dataclass(frozen=True)
class Logical:
    op: str  # "and" | "or"
    left: Expr
    right: Expr
    pos: int


Expr = Lit | ColumnRef | Call | Compare | Logical


@dataclass(frozen=True)
class Where:
    predicate: Expr
    pos: int


@dataclass(frozen=True)
class Agg:
    name: str | None
    func: str
    args: tuple[Expr, ...]
    pos: int


@dataclass(frozen=True)
class Group:
    name: str | None
    expr: Expr
    pos: int


@dataclass(frozen=True)
class Summarize:
    aggs: tuple[Agg, ...]
    by: tuple[Group, ...]
    pos: int


@dataclass(frozen=True)
class Project:
    columns: tuple[tuple[str, ColumnRef], ...]  # (output name, source column)
    pos: int


@dataclass(frozen=True)
class Take:
    count: int
    pos: int


@dataclass(frozen=True)
class SortKey:
    column: ColumnRef
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class OrderBy:
    keys: tuple[SortKey, ...]
    pos: int


@dataclass(frozen=True)
class CountOp:
    pos: int


Stage = Where | Summarize | Project | Take | OrderBy | CountOp


@dataclass(frozen=True)
class Query:
    table: str
    table_pos: int
    stages: tuple[Stage, ...]


# --- parser ----------------------------------------------------------------------------------

_CONTINUATIONS = frozenset({"and", "or", "by", "asc", "desc"})
_CMP_OPS = ("==", "!=", "<>", "<", "<=", ">", ">=")
_KNOWN_UNSUPPORTED = frozenset(
    {"extend", "join", "union", "parse", "mv-expand", "make-series", "render", "top", "distinct",
     "lookup", "evaluate", "as", "let", "sample", "search", "serialize", "invoke", "range",
     "print", "datatable", "getschema"}
)  # fmt: skip


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, message: str, tok: Token | None = None) -> KqlSyntaxError:
        tok = tok or self.tok
        return KqlSyntaxError(message, tok.pos, tok.text or "<end of query>")

    def advance(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at_op(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == op

    def at_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.value is None and self.tok.text in words

    def expect_op(self, op: str) -> Token:
        if not self.at_op(op):
            raise self.error(f"expected '{op}'")
        return self.advance()

    def expect_word(self, word: str) -> Token:
        if not self.at_word(word):
            raise self.error(f"expected '{word}'")
        return self.advance()

    def ident(self, what: str) -> Token:
        if self.tok.kind != "ident":
            raise self.error(f"expected {what}")
        return self.advance()

    # query and stages

    def query(self) -> Query:
        table = self.ident("a table name")
        stages: list[Stage] = []
        while self.at_op("|"):
            self.advance()
            stages.append(self.stage())
        if self.at_op(";"):
            self.advance()
        if self.tok.kind != "eof":
            raise self.error("unexpected token")
        return Query(table.text, table.pos, tuple(stages))

    def stage(self) -> Stage:
        tok = self.tok
        if tok.kind != "ident":
            raise self.error("expected a query operator")
        word = tok.text
        if word == "where" or word == "filter":
            self.advance()
            return Where(self.expr(), tok.pos)
        if word == "summarize":
            self.advance()
            return self.summarize(tok.pos)
        if word == "project":
            self.advance()
            return self.project(tok.pos)
        if word in ("take", "limit"):
            self.advance()
            num = self.tok
            if num.kind != "int":
                raise self.error(f"'{word}' expects an integer literal")
            self.advance()
            return Take(int(num.text), tok.pos)
        if word in ("order", "sort"):
            self.advance()
            self.expect_word("by")
            keys = [self.sort_key()]
            while self.at_op(","):
                self.advance()
                keys.append(self.sort_key())
            return OrderBy(tuple(keys), tok.pos)
        if word == "count":
            self.advance()
            return CountOp(tok.pos)
        if word in _KNOWN_UNSUPPORTED:
            raise self.error(f"operator '{word}' is not supported by the emulator")
        raise self.error(f"unknown query operator '{word}'")

    def summarize(self, pos: int) -> Summarize:
        aggs = [self.agg()]
        while self.at_op(","):
            self.advance()
            aggs.append(self.agg())
        groups: list[Group] = []
        if self.at_word("by"):
            self.advance()
            groups.append(self.group())
            while self.at_op(","):
                self.advance()
                groups.append(self.group())
        return Summarize(tuple(aggs), tuple(groups), pos)

    def _alias(self) -> str | None:
        nxt = self.toks[self.i + 1]
        if self.tok.kind == "ident" and nxt.kind == "op" and nxt.text == "=":
            name = self.advance().text
            self.advance()
            return name
        return None

    def agg(self) -> Agg:
        name = self._alias()
        func = self.ident("an aggregation function")
        self.expect_op("(")
        args: list[Expr] = []
        if not self.at_op(")"):
            args.append(self.expr())
            while self.at_op(","):
                self.advance()
                args.append(self.expr())
        self.expect_op(")")
        return Agg(name, func.text, tuple(args), func.pos)

    def group(self) -> Group:
        pos = self.tok.pos
        name = self._alias()
        return Group(name, self.expr(), pos)

    def project(self, pos: int) -> Project:
        cols = [self.proj_item()]
        while self.at_op(","):
            self.advance()
            cols.append(self.proj_item())
        return Project(tuple(cols), pos)

    def proj_item(self) -> tuple[str, ColumnRef]:
        name = self._alias()
        col = self.ident("a column name")
        if self.at_op("("):
            raise self.error("expressions in 'project' are not supported by the emulator")
        return (name or col.text, ColumnRef(col.text, col.pos))

    def sort_key(self) -> SortKey:
        col = self.ident("a column name")
        descending = True  # KQL sorts descending unless told otherwise
        if self.at_word("asc", "desc"):
            descending = self.advance().text == "desc"
        nulls_first = not descending
        if self.at_word("nulls"):
            self.advance()
            if not self.at_word("first", "last"):
                raise self.error("expected 'first' or 'last'")
            nulls_first = self.advance().text == "first"
        return SortKey(ColumnRef(col.text, col.pos), descending, nulls_first)

    # expressions

    def expr(self) -> Expr:
        left = self.and_expr()
        while self.at_word("or"):
            tok = self.advance()
            left = Logical("or", left, self.and_expr(), tok.pos)
        return left

    def and_expr(self) -> Expr:
        left = self.cmp_expr()
        while self.at_word("and"):
            tok = self.advance()
            left = Logical("and", left, self.cmp_expr(), tok.pos)
        return left

    def cmp_expr(self) -> Expr:
        left = self.primary()
        if self.tok.kind == "op" and self.tok.text in _CMP_OPS:
            tok = self.advance()
            op = "!=" if tok.text == "<>" else tok.text
            return Compare(op, left, self.primary(), tok.pos)
        # `x contains "y"`, `x in (...)`, `x between (...)`, `x has "y"`: valid KQL, not ours.
        if self.tok.kind == "ident" and self.tok.value is None and self.tok.text not in _CONTINUATIONS:
            raise self.error(f"operator '{self.tok.text}' is not supported by the emulator")
        return left

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "string":
            self.advance()
            return Lit(tok.value, "string", tok.pos)
        if tok.kind == "int":
            self.advance()
            return Lit(tok.value, "long", tok.pos)
        if tok.kind == "real":
            self.advance()
            return Lit(tok.value, "real", tok.pos)
        if tok.kind == "timespan":
            self.advance()
            return Lit(tok.value, "timespan", tok.pos)
        if tok.kind == "datetime":
            self.advance()
            return Lit(tok.value, "datetime", tok.pos)
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            inner = self.expr()
            self.expect_op(")")
            return inner
        if tok.kind == "op" and tok.text == "-":
            nxt = self.toks[self.i + 1]
            if nxt.kind in ("int", "real", "timespan") and isinstance(nxt.value, int | float):
                self.i += 2
                return Lit(-nxt.value, {"int": "long"}.get(nxt.kind, nxt.kind), tok.pos)
            raise self.error("unary minus is only supported before a number or timespan literal")
        if tok.kind == "ident":
            self.advance()
            if tok.value is None and tok.text in ("true", "True", "TRUE"):
                return Lit(True, "bool", tok.pos)
            if tok.value is None and tok.text in ("false", "False", "FALSE"):
                return Lit(False, "bool", tok.pos)
            if self.at_op("("):
                self.advance()
                args: list[Expr] = []
                if not self.at_op(")"):
                    args.append(self.expr())
                    while self.at_op(","):
                        self.advance()
                        args.append(self.expr())
                self.expect_op(")")
                return Call(tok.text, tuple(args), tok.pos)
            return ColumnRef(tok.text, tok.pos)
        raise self.error("expected an expression")


def parse(text: str) -> Query:
    """Parse ``text``; raises ``KqlSyntaxError`` with the offending position and token."""
    if not text.strip():
        raise KqlSyntaxError("empty query", 0, "")
    return _Parser(text).query()
