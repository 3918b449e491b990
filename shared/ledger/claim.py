"""What a run holds while it moves a window: its ``Claim``, and the ways it can lose it."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from shared.model import Window
from shared.windows import WindowState

__all__ = ["CLEAR", "Claim", "LeaseLost", "closed_fields", "forget_checkpoint", "free_takeovers"]

CLEAR = ""  # the SDK drops None from a MERGE; an empty string clears a field


class LeaseLost(Exception):
    """Our claim was taken over (lease expired and another runner reclaimed the window, or a replay)."""


def free_takeovers(max_attempts: int) -> int:
    """Runs that may die without an outcome before each further death keeps its attempt."""
    return 2 * max_attempts


@dataclass
class Claim:
    """Proof that this runner holds a window; the ETag advances with every write of the run."""

    pipeline: str
    window: Window
    owner: str
    attempts: int
    etag: str
    lease_until: datetime
    previous: WindowState | None = None  # the window as the claim found it
    entity: dict[str, Any] = field(default_factory=dict, repr=False)  # the entity as this run last wrote it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    lost: threading.Event = field(default_factory=threading.Event, repr=False)  # set once a write found it taken


def closed_fields(state: WindowState, now: datetime) -> dict[str, Any]:
    """A window with no attempt left (T3/T4 past the takeover allowance): ``failed``, no next attempt."""
    died = state.status == "running" or state.takeovers
    reason = (
        f"closed: its runs died {state.takeovers + (state.status == 'running')} times without an outcome"
        " (the lease ran out each time; the window may need more memory or time than a worker has)"
        if died
        else f"closed: no attempt left ({state.attempts} used)"
    )
    return {
        "Status": "failed",
        "LastError": f"{reason}; replay it once the cause is fixed",
        "FailKind": "window",
        "NextAttemptAt": CLEAR,
        "LeaseOwner": "",
        "LeaseUntil": CLEAR,
        "QueuedAt": CLEAR,
        "FinishedAt": now,
        "UpdatedAt": now,
    }


def forget_checkpoint(state: WindowState | None) -> dict[str, Any]:
    """Fields that drop a checkpoint, keeping every name it may have left in ``Leftovers``/``Writing``."""
    if state is None:
        return {"Writing": orjson.dumps([""]).decode()}
    extra = dict(state.extra)
    checkpoint = extra.pop("checkpoint", None)
    leftovers = list(state.leftovers)
    writing = [*state.writing, ""]
    if isinstance(checkpoint, Mapping):
        leftovers += [(int(o.get("sink", 0)), str(o["name"])) for o in checkpoint.get("outputs", [])]
        writing.append(f"c{int(checkpoint.get('chunks', 0)):04d}")  # the chunk being written when it stopped
    return {
        "Extra": orjson.dumps(extra).decode(),
        "Leftovers": orjson.dumps(sorted(set(leftovers))).decode(),
        "Writing": orjson.dumps(sorted(set(writing))).decode(),
    }
