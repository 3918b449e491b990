"""Malformed requests and settings for the bad-input suite (``devtools.fuzz``), seeded and reproducible.

Every generated request is wrong in at least one way that makes it invalid (a bad
value, a missing or unknown field, a reversed range, a broken body, a wrong method),
so the only right answer is a 4xx with a reason. Every settings document is likewise
invalid (an unknown key, a wrong type, a bad value), so the only right outcome is a
``ConfigError`` listing the problem.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = ["Request", "request_cases", "settings_cases"]

# Values no field of a replay accepts (types, sizes, injections); per-field pools add near misses.
ANY_BAD: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    [],
    {},
    ["2026-11-02T00:00:00Z"],
    {"$gt": ""},
    "",
    " ",
    "\x00",
    "x" * 10_000,
    "²",
    "١٢",
    "' OR 1=1 --",
    "requests | take 1",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "%00",
    "\ud83d\ude00",
    "\u202e",
]
BAD_TIMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "1900-01-01T00:00:00Z",
    "1601-01-01T00:00:00Z",
    "2020-01-01T00:00:00Z",
    "2999-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-02T25:00:00Z",
    "2026-11-02",
    "2026-11-02T10:00:00",
    "20261102",
    "now",
    "NaN",
    "1e10",
    "1730505600",
    "2026-11-02T10:00:00Z) | take 1 //",
    "２０２６-11-02T10:00:00Z",
    "2026-11-02T10:00:00.1234567890123456789Z",
]
BAD_MODES = ["AUTO", "now", "inline ", "queued", "sync"]
BAD_RECENT = ["²", "١٢", "-1", "0", "501", "1e3", "", " 5", "5 ", "0x10", "9" * 400, "1.0", "NaN", "ⅷ", "٣"]
BAD_FORMAT = ["xml", "HTML", "JSON", "", " json", "html\x00", "csv", "ｊｓｏｎ"]


@dataclass(frozen=True)
class Request:
    """One HTTP request, sent as raw bytes so that any header or body can be malformed."""

    name: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def raw(self, host: str) -> bytes:
        head = {"Host": host, "Connection": "close", **self.headers}
        if "Content-Length" not in head and (self.body or self.method in ("POST", "PUT", "PATCH")):
            head["Content-Length"] = str(len(self.body))
        lines = [f"{self.method} {self.path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass") + self.body


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _qs(fields: dict[str, Any]) -> str:
    return "&".join(
        f"{quote(str(k), safe='')}={quote(str(v), safe='', errors='surrogatepass')}" for k, v in fields.items()
    )


def request_cases(rng: random.Random, count: int, pipeline: str, valid: tuple[str, str]) -> list[Request]:
    """``count`` malformed requests against a stack whose pipeline ``pipeline`` may replay ``valid``."""
    start, end = valid
    base = {"pipeline": pipeline, "start": start, "end": end}
    makers: list[Callable[[], Request]] = []

    def bad_value(key: str) -> Any:
        pool = {"start": BAD_TIMES, "end": BAD_TIMES, "mode": BAD_MODES, "pipeline": ["nope", pipeline.upper()]}[key]
        return rng.choice(pool + ANY_BAD)

    def body_field() -> Request:
        key = rng.choice(["pipeline", "start", "end", "start", "end", "mode"])
        doc: dict[str, Any] = dict(base) | {key: bad_value(key)}
        return Request(f"body {key}={str(doc[key])[:30]!r}", "POST", "/api/replay", _json(doc))

    def query_field() -> Request:
        key = rng.choice(["pipeline", "start", "end", "mode"])
        doc = dict(base) | {key: bad_value(key)}
        dup = f"&{key}={quote(str(bad_value(key)), safe='', errors='surrogatepass')}" if rng.random() < 0.3 else ""
        return Request(f"query {key}", "POST", f"/api/replay?{_qs(doc)}{dup}"[:6000])

    def missing() -> Request:
        doc = dict(base)
        for key in rng.sample(sorted(doc), rng.randint(1, 3)):
            del doc[key]
        return Request(f"missing {sorted(set(base) - set(doc))}", "POST", "/api/replay", _json(doc))

    def unknown() -> Request:
        extra = rng.choice(["query", "Pipeline", "starts", "end ", "code", "__proto__", "x" * 300, ""])
        return Request(f"unknown {extra[:20]!r}", "POST", "/api/replay", _json(base | {extra: rng.choice(ANY_BAD)}))

    def reversed_range() -> Request:
        doc = base | ({"start": end, "end": start} if rng.random() < 0.5 else {"end": start})
        return Request("reversed range", "POST", "/api/replay", _json(doc))

    def raw_body() -> Request:
        bodies = [
            b"{not json",
            b'{"pipeline": "' + pipeline.encode() + b'",',
            b"\xff\xfe\x00{",
            b'{"pipeline": "\xff"}',
            b"[]",
            b'"text"',
            b"null",
            b"42",
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 2000 + b"1" + b"}" * 2000,
            b"pipeline=" + pipeline.encode() + b"&start=" + start.encode(),
            b"<replay/>",
            b'{"pipeline": 1e999999}',
            b"\x00" * 64,
            b"x" * 17_000,
            b'{"pipeline": "' + b"a" * 1_000_000 + b'"}',
        ]
        body = rng.choice(bodies)
        ctype = rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded", "", "x/\x7f"])
        headers = {"Content-Type": ctype} if ctype else {}
        return Request(f"raw body {body[:20]!r}", "POST", "/api/replay", body, headers)

    def status_param() -> Request:
        key = rng.choice(["recent", "format"])
        value = rng.choice(BAD_RECENT if key == "recent" else BAD_FORMAT)
        other = "&format=html" if key == "recent" and rng.random() < 0.5 else ""
        return Request(f"status {key}={value[:20]!r}", "GET", f"/api/status?{_qs({key: value})}{other}")

    def method_or_route() -> Request:
        choices = [
            ("GET", "/api/replay"),
            ("PUT", "/api/replay"),
            ("DELETE", "/api/replay"),
            ("PATCH", "/api/status"),
            ("POST", "/api/status"),
            ("OPTIONS", "/api/replay"),
            ("GET", "/api/nope"),
            ("GET", "/api/status/../replay"),
            ("POST", "/replay"),
            ("GET", "/api/%ff%fe"),
        ]
        method, path = rng.choice(choices)
        return Request(f"{method} {path}", method, path, _json(base) if method != "GET" else b"")

    def bad_header() -> Request:
        length = rng.choice(["-1", "abc", "1e3", "٣", "0x10", " "])
        return Request(f"Content-Length {length!r}", "POST", "/api/replay", b"", {"Content-Length": length})

    makers = [body_field] * 6 + [query_field] * 2 + [missing, unknown, reversed_range] + [raw_body] * 2
    makers += [status_param] * 2 + [method_or_route, bad_header]
    return [rng.choice(makers)() for _ in range(count)]


# -- settings -----------------------------------------------------------------------------------
def _walk(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every object in ``doc`` whose keys are field names (not free-form maps)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        out.append(path)
        for key, value in doc.items():
            out += _walk(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _walk(value, (*path, i))
    return out


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(document)"


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


# Per field, values that field never accepts (any context it appears in): a case mutates one of these.
_FIELD_BAD: dict[str, list[Any]] = {
    "name": [None, -1, True, [], "", "1abc", "a b", "x" * 64, "²", "a/b"],
    "kind": [None, 1, "", "App_Insights", "blob2", [], "ｂｌｏｂ"],
    "app_id": [None, "", "a b", "x" * 65, 1, "../x"],
    "endpoint": ["", "ftp://x", "x" * 5000, None, "http://", "https://a b"],
    "auth": [1, "entra", [], True],
    "setting": [None, "", "MISSING_SETTING", 1],
    "size": ["PT7M", "P2D", "PT0S", "", None, "1h", "PT30S", "P999999999999D"],
    "start": [None, "", "2026-11-01T00:07:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z", "yesterday", 5],
    "delay": ["", "5m", "P1Y", "P999999999999D", None, -1, "PT" + "1" * 400 + "S"],
    "lease": ["", "5m", "P1Y", None, []],
    "retry_backoff": ["", "5m", "P1Y", None, {}],
    "max_per_tick": [0, -1, 1.5, True, "12", None, 10**9],
    "max_attempts": [0, -1, 1.5, False, "5", None, 101],
    "container": [None, "", "UPPER", "a", "a--b", "x" * 64, "²", 7],
    "format": [None, "xml", "PARQUET", "", 1, "jsonl "],
    "compression": [None, "lz4", "", 1, "GZIP"],
    "path": [
        "",
        "{pipeline}",
        "{window",
        "{pipeline}/../{window}",
        "a//{window}",
        None,
        "{bad}/{window}",
        "\\{window}",
    ],
    "row_group_rows": [0, 999, 10**7, 1.5, "1000", None, True],
    "table": [None, "", "1abc", "a-b", "x" * 64],
    "include": [[], "timestamp", None, [1], [""], {}],
    "max_rows_per_query": [0, -1, 10**9, 1.5, None, "10"],
    "timeout_seconds": [0, 601, None, "10", True, float("nan")],
    "max_retries": [-1, 21, None, 1.5],
    "retention": ["PT1H", "P9999D", "", None, "P1Y"],
    "connection_setting": ["MISSING_SETTING", "", None],
}
_KNOWN_NAMES = set(_FIELD_BAD) | {"pipelines", "source", "window", "sink", "sinks", "columns", "query", "enabled"}


def settings_cases(
    rng: random.Random, count: int, env: dict[str, str], doc: dict[str, Any]
) -> list[tuple[str, dict[str, str]]]:
    """``count`` invalid app-setting environments (with what was changed) from a valid ``env`` + ``doc``."""
    objects = _walk(doc)
    env_bad = {
        "MOVER_SCHEDULE": ["*/5 * * * *", "0 61 * * * *", "every 5 minutes", " ", "0 */5 * * * * *", "\x00"],
        "MOVER_LEDGER_TABLE": ["x", "bad-name", "1abc", "a" * 70, "ĉĉĉ"],
        "MOVER_MAX_CONCURRENCY": ["٤", "0", "65", "-1", "9" * 5000, "1.5", "four"],
        "MOVER_TIME_BUDGET": ["5m", "P1Y", "PT", "P999999999999D", "PT" + "1" * 400 + "S"],
        "AzureWebJobsStorage": [
            "garbage",
            "AccountName=a;AccountKey=!!",
            "AccountName=a",
            "UseDevelopmentStorage=True",
            "AccountName=a;AcountKey=YWJj",
            ";;",
            "=",
            "DefaultEndpointsProtocol=gopher;AccountName=a;AccountKey=YWJj",
        ],
        "MOVER_PIPELINES": [
            "{",
            "[]",
            "{}",
            '{"pipelines": {}}',
            '{"pipelines": [1]}',
            "[" * 100_000,
            "/no/such/file.json",
            "x" * 5000,
            "a\x00b",
            '{"pipelines": [], "pipelnes": 1}',
            "null",
        ],
    }

    def env_value() -> tuple[str, dict[str, str]]:
        key = rng.choice(sorted(env_bad))
        value = rng.choice(env_bad[key])
        return f"{key}={value[:40]!r}", env | {key: value}

    def typo_key() -> tuple[str, dict[str, str]]:
        new = copy.deepcopy(doc)
        path = rng.choice(objects)
        obj = _at(new, path)
        key = rng.choice(sorted(obj))
        cut = rng.randrange(len(key))
        typo = key[:cut] + key[cut + 1 :]
        if typo in _KNOWN_NAMES or not typo:  # "sinks" -> "sink" is a field too: make it unknown
            typo += "x"
        obj[typo] = obj.pop(key)
        return f"typo {_where(path)}.{key} -> {typo}", env | {"MOVER_PIPELINES": json.dumps(new)}

    def unknown_key() -> tuple[str, dict[str, str]]:
        new = copy.deepcopy(doc)
        path, key = rng.choice(objects), rng.choice(["fromat", "colour", "Name", "x" * 200])
        _at(new, path)[key] = 1
        return f"unknown {_where(path)}.{key[:20]}", env | {"MOVER_PIPELINES": json.dumps(new)}

    def wrong_value() -> tuple[str, dict[str, str]]:
        new = copy.deepcopy(doc)
        spots = [(p, k) for p in objects for k in sorted(_at(new, p)) if k in _FIELD_BAD]
        path, key = rng.choice(spots)
        value = _at(new, path)[key] = rng.choice(_FIELD_BAD[key])
        return f"value {_where(path)}.{key}={str(value)[:30]!r}", env | {"MOVER_PIPELINES": json.dumps(new)}

    def whole_object() -> tuple[str, dict[str, str]]:
        new = copy.deepcopy(doc)
        pipeline = new["pipelines"][0]
        part = rng.choice(["source", "window", "sink", "columns"])
        value = pipeline[part] = rng.choice([1, "x", [1], True] + ([None, []] if part != "columns" else []))
        return f"object pipelines[0].{part}={value!r}", env | {"MOVER_PIPELINES": json.dumps(new)}

    makers = [env_value, typo_key, typo_key, unknown_key, wrong_value, wrong_value, whole_object]
    return [rng.choice(makers)() for _ in range(count)]
