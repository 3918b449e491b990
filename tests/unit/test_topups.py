"""Top-ups run off the caller's thread, one at a time, merged per pipeline, and survive a failing one."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from shared.engine.topups import TopUps


def pipe(name: str) -> Any:
    return SimpleNamespace(name=name)


def test_request_returns_while_the_top_up_runs_and_requests_meanwhile_are_merged():
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def top_up(pipeline: Any) -> None:
        ran.append(pipeline.name)
        started.set()
        assert release.wait(10)

    top_ups = TopUps(top_up)
    top_ups.request(pipe("a"))  # returns at once: the message's thread is free while "a" tops up
    assert started.wait(10)
    for name in ("b", "a", "b", "a"):  # asked again while busy: each pipeline once more, in first-asked order
        top_ups.request(pipe(name))
    assert not top_ups.wait(timeout=0.05)
    release.set()
    assert top_ups.wait(timeout=10)
    assert ran == ["a", "b", "a"]


def test_a_failing_top_up_is_logged_and_the_next_one_still_runs(caplog):
    ran: list[str] = []

    def top_up(pipeline: Any) -> None:
        ran.append(pipeline.name)
        if pipeline.name == "bad":
            raise ValueError("boom")

    top_ups = TopUps(top_up)
    top_ups.request(pipe("bad"))
    assert top_ups.wait(timeout=10)
    top_ups.request(pipe("good"))
    assert top_ups.wait(timeout=10)
    assert ran == ["bad", "good"]
    assert "bad: top-up failed" in caplog.text
