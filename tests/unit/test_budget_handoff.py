"""``WarmSlots``: released holds wait ``grace`` for a taker, then are cooled, on one helper thread."""

from __future__ import annotations

import threading
import time

import pytest

from shared.budget.handoff import WarmSlots
from shared.errors import ConfigError
from shared.settings import load_settings
from tests.unit.test_membudget import _env


def cooled_within(cooled: list[str], n: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(cooled) >= n:
            return True
        threading.Event().wait(0.01)
    return False


def test_the_last_released_hold_is_taken_first_and_taken_holds_are_never_cooled() -> None:
    cooled: list[str] = []
    warm: WarmSlots[str] = WarmSlots(60.0, cooled.append)
    warm.put("a")
    warm.put("b")
    assert warm.take() == "b" and warm.take() == "a" and warm.take() is None
    warm.flush()
    assert cooled == []


def test_a_hold_nobody_takes_is_cooled_after_the_grace() -> None:
    cooled: list[str] = []
    warm: WarmSlots[str] = WarmSlots(0.05, cooled.append)
    started = time.monotonic()
    warm.put("a")
    assert cooled_within(cooled, 1)
    assert cooled == ["a"] and time.monotonic() - started >= 0.05
    assert warm.take() is None and len(warm) == 0


def test_flush_cools_every_hold_at_once() -> None:
    cooled: list[str] = []
    warm: WarmSlots[str] = WarmSlots(60.0, cooled.append)
    for hold in "abc":
        warm.put(hold)
    warm.flush()
    assert sorted(cooled) == ["a", "b", "c"] and len(warm) == 0


def test_the_helper_thread_starts_again_after_it_went_idle(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("shared.budget.handoff._IDLE_S", 0.05)
    cooled: list[str] = []
    warm: WarmSlots[str] = WarmSlots(0.01, cooled.append)
    warm.put("a")
    assert cooled_within(cooled, 1)
    deadline = time.monotonic() + 5
    while warm._thread is not None and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert warm._thread is None  # went idle
    warm.put("b")
    assert cooled_within(cooled, 2) and cooled == ["a", "b"]


def test_the_hand_off_is_a_setting_in_milliseconds() -> None:
    assert load_settings(_env()).query_handoff_ms == 500
    assert load_settings(_env(MOVER_QUERY_HANDOFF_MS="0")).query_handoff_ms == 0  # off: slots freed at once
    with pytest.raises(ConfigError, match="MOVER_QUERY_HANDOFF_MS"):
        load_settings(_env(MOVER_QUERY_HANDOFF_MS="-1"))
