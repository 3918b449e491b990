"""Day rollups of a pipeline's windows (pure): what status reads instead of the window entities.

One ``Day`` per pipeline and UTC day holds one slot per window of that day (the window size
divides a day: 1 to 1,440 slots) with the window's status code, rows, bytes, quarantined rows
and ``Seq``, the details of windows that are not done (attempts, error, worker, times), the
day's sums, and the *intents* of writers that are changing a window right now (see
docs/reliability.md, "Day rollups"). ``shared.ledger.rollups`` reads and writes them.

Status codes, one character per slot: ``.`` not recorded, ``p`` pending, ``q`` queued,
``r`` running, ``d`` done, ``f`` failed (will retry), ``x`` failed and closed. Upper case
(``P Q R F X``): not done, but an earlier run's data is in place (landed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.model import Window, format_ts
from shared.windows import WindowState

__all__ = ["DAY", "NONE", "Day", "Sums", "code_of", "day_from_key", "day_key", "day_of", "status_of_code"]

DAY = timedelta(days=1)
NONE = "."
_CODES = {"pending": "p", "queued": "q", "running": "r", "done": "d", "failed": "f"}
_STATUS = {"p": "pending", "q": "queued", "r": "running", "d": "done", "f": "failed", "x": "failed"}
_ERROR_CHARS = 160  # the window entity keeps the whole reason; a day keeps enough to read it in a list
_INFO_CHARS = 30_000  # a string property holds at most 32K characters: details are split over Info0..InfoN
_INFO_PROPS = 20


def code_of(state: WindowState) -> str:
    """The slot code of a window state (see the module doc)."""
    code = "x" if state.status == "failed" and state.next_attempt_at is None else _CODES[state.status]
    return code.upper() if state.status != "done" and state.last_good else code


def status_of_code(code: str) -> str:
    """``pending``/``queued``/``running``/``done``/``failed``, or ``missing`` for an unrecorded slot."""
    return "missing" if code == NONE else _STATUS[code.lower()]


def day_of(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_key(day: datetime) -> str:
    return "d" + day.strftime("%Y%m%d")


def day_from_key(key: str) -> datetime:
    """``d20261102`` → that UTC midnight (``ValueError`` for anything else). Parsed by hand: a year of
    status reads thousands of keys, and ``strptime`` is slow."""
    if len(key) != 9 or not (key[1:].isascii() and key[1:].isdigit()):
        raise ValueError(f"not a day key: {key!r}")
    return datetime(int(key[1:5]), int(key[5:7]), int(key[7:9]), tzinfo=UTC)


def _ts(value: datetime | None) -> str | None:
    return format_ts(value) if value else None


@dataclass(frozen=True)
class Sums:
    """A day's (or a history's) totals: windows per code, rows, bytes, quarantined."""

    codes: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    bytes: int = 0
    quarantined: int = 0
    lo: int = -1  # first and last recorded slot of a day (-1: none): boundary days are exact without a read
    hi: int = -1

    def status_counts(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for code, n in self.codes.items():
            if code != NONE:
                out[status_of_code(code)] += n
        return dict(out)

    @property
    def recorded(self) -> int:
        return sum(n for c, n in self.codes.items() if c != NONE)

    @property
    def landed(self) -> int:
        return sum(n for c, n in self.codes.items() if c == "d" or (c != NONE and c.isupper()))

    @property
    def closed(self) -> int:
        return sum(n for c, n in self.codes.items() if c in ("x", "X"))

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            self.codes + other.codes,
            self.rows + other.rows,
            self.bytes + other.bytes,
            self.quarantined + other.quarantined,
        )  # lo/hi are a day's: a total has none

    def to_entity(self) -> dict[str, Any]:
        return {
            "Codes_n": orjson.dumps({c: n for c, n in self.codes.items() if c != NONE}).decode(),
            "SRows": self.rows,
            "SBytes": self.bytes,
            "SQuar": self.quarantined,
            "Lo": self.lo,
            "Hi": self.hi,
        }

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Sums:
        raw = entity.get("Codes_n") or "{}"
        return cls(
            Counter({str(k): int(v) for k, v in orjson.loads(raw).items()}),
            int(entity.get("SRows", 0) or 0),
            int(entity.get("SBytes", 0) or 0),
            int(entity.get("SQuar", 0) or 0),
            int(entity.get("Lo", -1) if entity.get("Lo") is not None else -1),
            int(entity.get("Hi", -1) if entity.get("Hi") is not None else -1),
        )


@dataclass
class Day:
    """One UTC day of one pipeline's windows; mutable while a writer or a build changes it."""

    pipeline: str
    day: datetime
    size: timedelta
    codes: list[str]
    rows: list[int]
    bytes: list[int]
    quarantined: list[int]
    seq: list[int]
    info: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: dict[int, dict[str, str]] = field(default_factory=dict)  # slot -> {intent id: when}
    built: bool = True
    etag: str | None = None  # as read; None: not stored yet

    # -- shape ------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, pipeline: str, day: datetime, size: timedelta, *, built: bool = True) -> Day:
        n = max(1, int(DAY / size)) if size <= DAY else 1
        return cls(pipeline, day, size, [NONE] * n, [0] * n, [0] * n, [0] * n, [0] * n, built=built)

    @property
    def key(self) -> str:
        return day_key(self.day)

    def slot(self, start: datetime) -> int:
        index = int((start - self.day) / self.size) if self.size <= DAY else 0
        if not 0 <= index < len(self.codes):
            raise ValueError(f"{format_ts(start)} is not a window start of day {self.key}")
        return index

    def window(self, slot: int) -> Window:
        start = self.day + slot * self.size
        return Window(start, start + self.size)

    # -- changes ----------------------------------------------------------------------------------
    def put(self, state: WindowState, *, force: bool = False) -> bool:
        """Take ``state`` into its slot when it is newer (``Seq``) than what the slot holds."""
        i = self.slot(state.window.start)
        if not force and self.codes[i] != NONE and state.seq < self.seq[i]:
            return False
        code = code_of(state)
        self.codes[i] = code
        self.rows[i], self.bytes[i], self.quarantined[i] = state.rows, state.bytes, state.quarantined
        self.seq[i] = state.seq
        if code == "d":
            self.info.pop(i, None)
        else:
            self.info[i] = _details(state)
        return True

    def intend(self, slots: list[int], intent: str, now: datetime) -> None:
        for i in slots:
            self.pending.setdefault(i, {})[intent] = format_ts(now)

    def settle(self, slots: list[int], intent: str) -> None:
        for i in slots:
            ids = self.pending.get(i)
            if ids is not None:
                ids.pop(intent, None)
                if not ids:
                    del self.pending[i]

    def stale_intents(self, now: datetime, older_than: timedelta) -> dict[int, list[str]]:
        """Intents whose writer must be gone (older than ``older_than``), per slot."""
        from shared.durations import parse_timestamp

        out: dict[int, list[str]] = {}
        for i, ids in self.pending.items():
            old = [k for k, at in ids.items() if parse_timestamp(at) + older_than <= now]
            if old:
                out[i] = old
        return out

    def sums(self) -> Sums:
        recorded = [i for i, c in enumerate(self.codes) if c != NONE]
        lo, hi = (recorded[0], recorded[-1]) if recorded else (-1, -1)
        return Sums(Counter(self.codes), sum(self.rows), sum(self.bytes), sum(self.quarantined), lo, hi)

    # -- storage ----------------------------------------------------------------------------------
    def to_entity(self) -> dict[str, Any]:
        info = orjson.dumps({str(k): v for k, v in sorted(self.info.items())}).decode()
        chunks = [info[i : i + _INFO_CHARS] for i in range(0, len(info), _INFO_CHARS)]
        if len(chunks) > _INFO_PROPS:  # a day full of failures with long reasons: keep the newest details
            chunks = _fit_info(self.info)
        entity: dict[str, Any] = {
            "PartitionKey": self.pipeline,
            "RowKey": self.key,
            "Size": int(self.size.total_seconds()),
            "Slots": "".join(self.codes),
            "Rows": _ints(self.rows),
            "Bytes": _ints(self.bytes),
            "Quar": _ints(self.quarantined),
            "Seq": _ints(self.seq),
            "Pend": orjson.dumps({str(k): v for k, v in self.pending.items()}).decode(),
            "Built": self.built,
            "Parts": len(chunks),
            **{f"Info{i}": (chunks[i] if i < len(chunks) else "") for i in range(_INFO_PROPS)},
        }
        return entity | self.sums().to_entity()

    @classmethod
    def from_entity(cls, entity: dict[str, Any], size: timedelta | None = None) -> Day:
        stored = timedelta(seconds=int(entity.get("Size", 0) or 0))
        day = day_from_key(str(entity["RowKey"]))
        want = size or stored
        etag = entity.get("_etag")
        if stored != want or not entity.get("Slots"):  # another window size (settings changed): rebuild it
            out = cls.empty(str(entity["PartitionKey"]), day, want, built=False)
            out.pending = _pending(entity)
            out.etag = etag
            return out
        info_text = "".join(str(entity.get(f"Info{i}") or "") for i in range(int(entity.get("Parts", 0) or 0)))
        out = cls(
            pipeline=str(entity["PartitionKey"]),
            day=day,
            size=want,
            codes=list(str(entity["Slots"])),
            rows=_list(entity.get("Rows")),
            bytes=_list(entity.get("Bytes")),
            quarantined=_list(entity.get("Quar")),
            seq=_list(entity.get("Seq")),
            info={int(k): v for k, v in (orjson.loads(info_text) if info_text else {}).items()},
            pending=_pending(entity),
            built=bool(entity.get("Built", False)),
            etag=etag,
        )
        n = len(out.codes)
        if any(len(values) != n for values in (out.rows, out.bytes, out.quarantined, out.seq)):
            broken = cls.empty(out.pipeline, day, want, built=False)  # not written by this code: rebuild it
            broken.pending, broken.etag = out.pending, etag
            return broken
        return out


def _details(state: WindowState) -> dict[str, Any]:
    out: dict[str, Any] = {"a": state.attempts}
    for key, value in (
        ("t", state.takeovers),
        ("e", state.error[:_ERROR_CHARS]),
        ("w", state.lease_owner if state.status in ("running", "queued") else ""),
        ("l", _ts(state.lease_until) if state.status == "running" else None),
        ("q", _ts(state.queued_at) if state.status == "queued" else None),
        ("n", _ts(state.next_attempt_at) if state.status == "failed" else None),
        ("k", state.fail_kind if state.status == "failed" else ""),
        ("g", int(state.last_good.get("rows", 0) or 0) if state.last_good else None),
    ):
        if value:
            out[key] = value
    return out


def _fit_info(info: dict[int, dict[str, Any]]) -> list[str]:
    """Details that fit the entity: errors shortened further, newest windows kept first."""
    kept: dict[str, Any] = {}
    budget = _INFO_CHARS * _INFO_PROPS - 2
    for slot in sorted(info, reverse=True):
        item = dict(info[slot])
        if "e" in item:
            item["e"] = str(item["e"])[:40]
        text = orjson.dumps(item).decode()
        if len(text) + len(str(slot)) + 4 > budget:
            break
        budget -= len(text) + len(str(slot)) + 4
        kept[str(slot)] = item
    body = orjson.dumps(dict(sorted(kept.items(), key=lambda kv: int(kv[0])))).decode()
    return [body[i : i + _INFO_CHARS] for i in range(0, len(body), _INFO_CHARS)]


def _ints(values: list[int]) -> str:
    return orjson.dumps(values).decode()


def _list(raw: Any) -> list[int]:
    return [int(v) for v in orjson.loads(raw)] if raw else []


def _pending(entity: dict[str, Any]) -> dict[int, dict[str, str]]:
    raw = entity.get("Pend") or "{}"
    return {int(k): dict(v) for k, v in orjson.loads(raw).items() if v}
