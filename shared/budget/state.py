"""The query budget's decisions, apart from storage (pure): who may start a query now, and when to look again.

A budget partition holds one entity per concurrency slot (``slot-000`` …: who holds it, until
when, and the start times of the recent requests made on it, packed) and a ``pause`` entity (set
by a 429). ``decide`` reads a snapshot of that partition and either grants a slot with rate left,
or says how long to wait. Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

__all__ = [
    "PAUSE_ROW",
    "Grant",
    "Limits",
    "SlotView",
    "Snapshot",
    "Wait",
    "budget_key",
    "decide",
    "pack_times",
    "quota",
    "slot_row",
    "unpack_times",
]

PAUSE_ROW = "pause"
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
    expires: int = 0
    holder: str = ""
    times: list[int] = field(default_factory=list)  # starts of requests made on this slot
    etag: str | None = None  # None: the entity does not exist yet (created on first grant)


@dataclass(frozen=True)
class Snapshot:
    slots: dict[int, SlotView]
    paused_until: int = 0
    pause_etag: str | None = None


@dataclass(frozen=True)
class Grant:
    """Take ``slot`` (if-match its ``etag``, or create it), its request log becoming ``times``."""

    slot: int
    etag: str | None
    times: list[int]
    base: int


@dataclass(frozen=True)
class Wait:
    """Nothing free now. ``ms``: when a pause or the rate frees up (known); ``None``: a slot — poll."""

    reason: str
    ms: int | None = None


def quota(limits: Limits, slot: int) -> int:
    """Slot ``slot``'s share of the rate: the shares sum to ``max_requests``."""
    share, extra = divmod(limits.max_requests, limits.max_concurrent)
    return share + (1 if slot < extra else 0)


def decide(snap: Snapshot, now: int, limits: Limits, rng: random.Random) -> Grant | Wait:
    """Grant a free slot that has rate left, or say why not and for how long.

    The rate is split over the slots: slot ``i`` may start a request at ``now`` only while fewer
    than ``quota(i)`` started on it in ``[now - period, now]`` (both ends counted). No closed span
    of ``period`` holds more than ``quota(i)`` starts on slot ``i``, so never more than
    ``max_requests`` in all — and taking a slot writes that one entity only, so instances contend
    only when they pick the same slot. A free slot is a missing entity or one whose holder's
    expiry has passed; among the usable ones a random one, so racing instances rarely collide.
    """
    if snap.paused_until > now:
        return Wait("throttled", snap.paused_until - now)
    period = round(limits.period * 1000)
    usable: list[tuple[int, list[int]]] = []
    refill: list[int] = []
    for i in range(limits.max_concurrent):
        view = snap.slots.get(i, SlotView())
        if view.expires > now:
            continue
        recent = [t for t in view.times if t >= now - period]
        share = quota(limits, i)
        if len(recent) < share:
            usable.append((i, recent))
        elif share:
            refill.append(recent[len(recent) - share] + period - now + 1)
    if usable:
        slot, recent = rng.choice(usable)
        return Grant(slot, snap.slots.get(slot, SlotView()).etag, [*recent, now], now - period)
    if refill:
        return Wait("rate", min(refill))
    return Wait("slots")
