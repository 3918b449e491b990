"""The query budget's decisions, apart from storage (pure): who may start a query now, and when to look again.

A budget partition holds one entity per concurrency slot (``slot-000`` …: who holds it and until
when) and one ``rate`` entity (the start times of recent requests, packed, and a pause set by a
429). ``decide`` reads a snapshot of that partition and either grants a slot plus one request of
the rate, or says how long to wait. Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

__all__ = [
    "RATE_ROW",
    "Grant",
    "Limits",
    "RateView",
    "SlotView",
    "Snapshot",
    "Wait",
    "budget_key",
    "decide",
    "pack_times",
    "slot_row",
    "unpack_times",
]

RATE_ROW = "rate"
_OFFSET = struct.Struct("<I")


@dataclass(frozen=True)
class Limits:
    """At most ``max_concurrent`` queries in flight and ``max_requests`` started per ``period`` seconds."""

    max_concurrent: int = 5
    max_requests: int = 180
    period: float = 30.0


def budget_key(kind: str, who: str | None, endpoint: str) -> str:
    """Partition key of an identity at an endpoint: a hash, so no name or id is stored in clear.

    ``who`` is a client id or the *name* of the setting that holds a key — never a secret.
    """
    digest = hashlib.sha256(f"{kind}\n{who or ''}\n{endpoint.rstrip('/').lower()}".encode()).hexdigest()
    return f"q{digest[:24]}"


def slot_row(index: int) -> str:
    return f"slot-{index:03d}"


def pack_times(times: list[int], base: int) -> bytes:
    """Times as uint32 millisecond offsets from ``base`` (4 bytes each: 10,000 fit an entity's 64 KiB binary)."""
    return b"".join(_OFFSET.pack(max(0, t - base)) for t in times)


def unpack_times(data: bytes | None, base: int) -> list[int]:
    if not data:
        return []
    return sorted(base + off for (off,) in _OFFSET.iter_unpack(data[: len(data) // 4 * 4]))


@dataclass(frozen=True)
class SlotView:
    expires: int
    holder: str = ""
    etag: str | None = None  # None: the entity does not exist yet (created on first grant)


@dataclass(frozen=True)
class RateView:
    times: list[int] = field(default_factory=list)
    paused_until: int = 0
    etag: str | None = None


@dataclass(frozen=True)
class Snapshot:
    slots: dict[int, SlotView]
    rate: RateView


@dataclass(frozen=True)
class Grant:
    """Take ``slot`` (if-match its ``etag``, or create it) and write ``times`` (if-match the rate's etag)."""

    slot: int
    slot_etag: str | None
    times: list[int]
    base: int


@dataclass(frozen=True)
class Wait:
    """Nothing free now. ``ms``: when the rate or a pause frees up (known); ``None``: a slot — poll."""

    reason: str
    ms: int | None = None


def decide(snap: Snapshot, now: int, limits: Limits, rng: random.Random) -> Grant | Wait:
    """Grant a free slot and one request of the rate, or say why not.

    Rate: a request may start at ``now`` only while fewer than ``max_requests`` started in
    ``[now - period, now]`` (both ends counted), so no closed span of ``period`` ever holds more.
    A free slot is a missing entity or one whose holder's expiry has passed; among several, a
    random one, so instances that read the same snapshot rarely race for the same entity.
    """
    if snap.rate.paused_until > now:
        return Wait("throttled", snap.rate.paused_until - now)
    period = round(limits.period * 1000)
    recent = [t for t in snap.rate.times if t >= now - period]
    if len(recent) >= limits.max_requests:
        oldest_blocking = recent[len(recent) - limits.max_requests]
        return Wait("rate", oldest_blocking + period - now + 1)
    free = [i for i in range(limits.max_concurrent) if i not in snap.slots or snap.slots[i].expires <= now]
    if not free:
        return Wait("slots")
    slot = rng.choice(free)
    view = snap.slots.get(slot)
    return Grant(slot, view.etag if view else None, [*recent, now], now - period)
