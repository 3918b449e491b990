"""The queue run's own checks must see what they exist to see: the queue depth the app causes (not the
suite's own messages, nor messages of killed workers), how windows ended, whether replays were honoured,
and the recovery time after the last fault. Pure: synthetic worker logs and ledger states."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from devtools.faultsuite_check import PipelineRange
from devtools.faultsuite_depth import (
    claims,
    decisions,
    deletions,
    depth_figures,
    early_resends,
    overtaken,
    sends,
    spent,
)  # fmt: skip
from devtools.faultsuite_operator import Replay, _disagreement
from devtools.faultsuite_procs import planner_kill_plan
from devtools.faultsuite_settle import Accepted, closed_by_window, settle
from shared.model import Window
from shared.windows import WindowState

T0 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)
Q = "work"


def _logs() -> dict[str, str]:
    """Worker A finishes m1; worker B is killed holding m2, which C gets again after the visibility timeout;
    C also deletes m3, a copy the suite sent itself. A planner sent m1 and m2."""
    return {
        "runner-001.log": "\n".join(
            ["some log line", f"FAULTQRCV {Q} m1 10.0", f"FAULTQFIN {Q} m1 12.0", f"FAULTQDEL {Q} m1 12.0 12.5",
             "FAULTQDEL other m9 1.0 2.0"]
        ),
        "runner-002.log": f"FAULTQRCV {Q} m2 10.0\n",
        "runner-003.log": f"FAULTQRCV {Q} m2 40.0\nFAULTQFIN {Q} m2 40.5\nFAULTQDEL {Q} m2 41.0 41.2\n"
        f"FAULTQRCV {Q} m3 19.0\nFAULTQFIN {Q} m3 19.5\nFAULTQDEL {Q} m3 20.0 20.1\n",
        "planner-001.log": f"FAULTQSND {Q} m1 9.0 window req 20261102T000000Z\nFAULTQSND {Q} m2 9.5 sweep req x\n",
    }


def test_the_depth_the_app_causes_leaves_out_the_suites_messages_and_those_of_killed_workers():
    logs = _logs()
    down = {"runner-002.log": [(11.0, float("inf"))]}  # B was SIGKILLed at 11 s holding m2
    assert deletions(logs, Q) == {"m1": 12.0, "m2": 41.0, "m3": 20.0}
    assert deletions(logs, Q, ended=True)["m1"] == 12.5
    held = spent(logs, Q, down)
    assert sorted(held) == [("m1", 12.0, 12.5), ("m2", 11.0, 40.0), ("m2", 40.5, 41.2), ("m3", 19.5, 20.1)]
    injected = {"m3": 5.0}  # the suite's copy, sent at 5 s
    samples = [(6.0, 1), (10.5, 3), (11.5, 3), (12.2, 3), (30.0, 2), (40.7, 1)]
    figures = depth_figures(samples, injected, deletions(logs, Q), held, bound=1, began=0.0,
                            sent=sends(logs, Q), gone=deletions(logs, Q, ended=True))  # fmt: skip
    # 10.5 s: m1 and m2 being worked on, m3 the suite's: 2 > 1; later B is dead (m2 spent), m1 finished
    assert [row[1:] for row in figures.series] == [(1, 1, 0), (3, 1, 0), (3, 1, 1), (3, 1, 2), (2, 0, 1), (1, 0, 1)]
    assert (figures.max_app, figures.max_injected, figures.max_spent, figures.max_total) == (2, 1, 2, 3)
    assert len(figures.over) == 1 and figures.over[0].startswith("10.5s: 3 messages, 1 the suite's, 0 spent")
    assert "'window req': 1" in figures.over[0] and "'sweep req': 1" in figures.over[0]
    assert not depth_figures(samples, injected, deletions(logs, Q), held, bound=2, began=0.0).over


def test_an_older_message_of_work_the_app_sent_again_is_not_counted_twice():
    logs = {
        "planner-001.log": f"FAULTQSND {Q} m4 50.0 window req 20261102T010000Z\n"
        f"FAULTQSND {Q} m5 55.0 window req 20261102T010000Z\nFAULTQSND {Q} m6 56.0 sweep req 20261102T010000Z\n",
        "runner-001.log": f"FAULTQRCV {Q} m5 56.0\nFAULTQFIN {Q} m5 58.0\nFAULTQDEL {Q} m5 58.0 58.1\n"
        f"FAULTQRCV {Q} m4 70.0\nFAULTQFIN {Q} m4 70.5\nFAULTQDEL {Q} m4 70.5 70.6\n",
    }
    gone = deletions(logs, Q, ended=True)
    samples = [(52.0, 1), (57.0, 3), (60.0, 2)]  # m4 (taken by a worker that stalled), m5 the takeover's, m6
    figures = depth_figures(samples, {}, deletions(logs, Q), spent(logs, Q, {}), bound=1, began=0.0,
                            sent=sends(logs, Q), gone=gone)  # fmt: skip
    assert [row[1:] for row in figures.series] == [(1, 0, 0), (3, 0, 1), (2, 0, 0)]
    assert figures.max_app == 2 and len(figures.over) == 2  # a window and a sweep of it are two pieces of work


def test_work_sent_again_while_its_message_still_waits_is_reported_unless_replayed_or_presumed_lost():
    sent = {"a1": (10.0, "window req 2026-11-02T00:00:00Z"), "a2": (12.0, "window req 2026-11-02T00:00:00Z"),
            "b1": (10.0, "window req 2026-11-02T01:00:00Z"), "b2": (50.0, "window req 2026-11-02T01:00:00Z"),
            "c1": (10.0, "sweep req 2026-11-02T02:00:00Z"), "c2": (11.0, "sweep req 2026-11-02T02:00:00Z")}  # fmt: skip
    received = {"a1": 30.0, "c1": 10.5}  # a1 waited unreceived; c1 was taken before c2 was sent (a takeover)
    early = early_resends(sent, {}, received, {}, limit=35.0)
    assert early == ["window req 2026-11-02T00:00:00Z: sent again 2.0s after a message still waiting (a1)"]
    assert early_resends(sent, {}, received, {"req 2026-11-02T00:00:00Z": [11.0]}, limit=35.0) == []  # replayed
    assert early_resends(sent, {"a1": 11.5}, received, {}, limit=35.0) == []  # a1 was gone (deleted) by then
    # a run claimed the window in between (through another message): its pause sent the next one
    assert early_resends(sent, {}, received, {}, 35.0, claims({"runner-001.log": "FAULTQCLAIM req "
                                                                "2026-11-02T00:00:00Z 11.0\n"})) == []  # fmt: skip


def test_a_send_is_placed_at_the_mark_it_followed_not_at_when_it_reached_the_queue():
    # a planner marked the window at 35.4 but sent only at 36.14; an operator's replay at 35.52 made it
    # pending again, and a worker's top-up marked (35.6) and sent (35.62) it: two legitimate messages
    logs = {"planner-001.log": f"FAULTQSND {Q} late 36.14 window req 2026-11-02T00:00:00Z 35.4\n",
            "runner-001.log": f"FAULTQSND {Q} early 35.62 window req 2026-11-02T00:00:00Z 35.6\n"}  # fmt: skip
    sent, replayed = sends(logs, Q), {"req 2026-11-02T00:00:00Z": [35.52]}
    assert decisions(logs, Q) == {"late": 35.4, "early": 35.6}
    assert early_resends(sent, {}, {}, replayed, 35.0, decided=decisions(logs, Q)) == []
    assert len(early_resends(sent, {}, {}, replayed, 35.0)) == 1  # by the time they reached the queue: flagged


def test_a_message_whose_work_another_message_did_is_no_work_in_flight():
    logs = {
        "planner-001.log": f"FAULTQSND {Q} m1 10.0 window req 2026-11-02T00:00:00Z 9.9\n",
        # m0, an older message of the same window, came back and its worker claimed the window at 12 s
        "runner-001.log": f"FAULTQCLAIM req 2026-11-02T00:00:00Z 12.0 m0\nFAULTQRCV {Q} m1 30.0\n"
        f"FAULTQFIN {Q} m1 30.1\nFAULTQDEL {Q} m1 30.1 30.2\n",
        "runner-002.log": "FAULTQCLAIM req 2026-11-02T00:00:00Z 31.0 m1\n",  # its own claim: never counted
    }
    sent = sends(logs, Q)
    spans = overtaken(logs, Q, sent, decisions(logs, Q), claims(logs, by=True))
    assert spans == [("m1", 12.0, 30.0)]  # from the other claim until a worker took m1 (and dropped it)
    assert claims(logs) == {"req 2026-11-02T00:00:00Z": [12.0, 31.0]}


def test_a_frozen_worker_holds_its_message_only_while_frozen():
    logs = {"runner-001.log": f"FAULTQRCV {Q} m1 10.0\nFAULTQFIN {Q} m1 30.0\nFAULTQDEL {Q} m1 30.0 30.1\n"}
    assert spent(logs, Q, {"runner-001.log": [(11.0, 23.0)]}) == [("m1", 11.0, 23.0), ("m1", 30.0, 30.1)]
    assert spent(logs, Q, {"runner-001.log": [(5.0, 9.0)]}) == [("m1", 30.0, 30.1)]  # down before it took it


def _state(hour: int, status: str, **kw) -> WindowState:
    return WindowState(Window(T0 + hour * H, T0 + (hour + 1) * H), status, **kw)  # type: ignore[arg-type]


def test_settle_sorts_windows_into_done_closed_and_stuck_and_checks_replays_and_recovery():
    at = T0 + 30 * H
    states = {"req": [
        _state(0, "done", started_at=at + timedelta(seconds=5), replay_at=at, finished_at=at + timedelta(seconds=9)),
        _state(1, "failed", attempts=5, fail_kind="window", error="fatal: … (E_OVERFLOW, 0x80DA0006).",
               finished_at=at + timedelta(seconds=3)),
        _state(2, "failed", attempts=0, fail_kind="transient", error="retriable: 503", next_attempt_at=at),
        _state(3, "failed", attempts=5, fail_kind="window", error="closed: its runs died 11 times"),
        _state(4, "done", started_at=at - timedelta(seconds=1), replay_at=at - timedelta(seconds=2)),
    ]}  # fmt: skip
    spec = PipelineRange("req", "requests", T0, 6)
    accepted = [Accepted("req", "20261102T000000Z", at, "queue", "replay #1"),
                Accepted("req", "20261102T040000Z", at, "queue", "replay #2"),
                Accepted("req", "20261102T020000Z", at + timedelta(seconds=1), "inline", "replay #3")]  # fmt: skip
    out = settle([spec], states, accepted, [(at, "kill"), (at + timedelta(seconds=2), "strike")],
                 timedelta(seconds=6))  # fmt: skip
    assert out.statuses == {"done": 2, "closed": 1, "failed": 2, "unrecorded": 1}
    assert [c[1] for c in out.closed] == ["20261102T010000Z"] and closed_by_window(states["req"][1])
    assert len(out.stuck) == 3 and "runs died" in out.stuck[1] and "not in the ledger" in out.stuck[2]
    assert out.replays_checked == 3
    assert len(out.replay_problems) == 4  # #2: ReplayAt rolled back, an older run; #3: no ReplayAt, never ran
    assert all("replay #1" not in p for p in out.replay_problems)
    assert (out.last_fault, out.last_window, out.recovery_s) == ("strike", "req 20261102T000000Z", 7.0)
    assert any("7.0s after the last fault" in p for p in out.problems)


def test_an_inline_replay_may_start_at_the_instant_it_was_accepted():
    at = T0 + 30 * H
    states = {"req": [_state(0, "done", started_at=at, replay_at=at, finished_at=at)]}
    spec = PipelineRange("req", "requests", T0, 1)
    inline = settle([spec], states, [Accepted("req", "20261102T000000Z", at, "inline", "r")], [], timedelta(1))
    queued = settle([spec], states, [Accepted("req", "20261102T000000Z", at, "queue", "r")], [], timedelta(1))
    assert not inline.replay_problems and len(queued.replay_problems) == 1


@pytest.mark.parametrize(
    ("mode", "said", "accepted", "problem"),
    [
        ("queue", "queued 2 of 2 windows for the next ticks", 2, ""),
        ("queue", "queued 2 of 2 windows for the next ticks", 1, "the CLI said it queued 2"),
        ("inline", "req 2026-11-02T00:00:00Z done      rows=5", 1, ""),
        ("inline", "req 2026-11-02T00:00:00Z skipped   rows=0", 1, "the CLI said skipped"),
        ("inline", "req 2026-11-02T00:00:00Z done      rows=5", 0, "the ledger has no replay"),
        ("inline", "req 2026-11-02T00:00:00Z failed    rows=0 ledger: storage unreachable", 0, ""),
    ],
    ids=["queued-agrees", "queued-disagrees", "inline-agrees", "skipped-but-recorded", "done-but-unrecorded",
         "refused-by-storage"],
)
def test_what_the_cli_printed_must_agree_with_the_ledger(mode, said, accepted, problem):
    windows = (Window(T0, T0 + H), Window(T0 + H, T0 + 2 * H))[: 2 if mode == "queue" else 1]
    replay = Replay(1, "req", windows, mode, "random", code=0, said=said)
    replay.accepted = {w.key: T0 for w in windows[:accepted]}
    assert (problem in _disagreement(replay)) if problem else _disagreement(replay) == ""


def test_a_planner_kill_plan_holds_each_queue_mark_point():
    plan = planner_kill_plan(random.Random(3), 8, (0.5, 4.0))
    points = [k.point for k in plan]
    assert len(plan) == 8 and {"time", "enqueue", "sweepmark", "record"} <= set(points)
    assert all(0.5 <= k.after <= 4.0 for k in plan if k.point == "time")
    assert all(1 <= k.nth <= 3 for k in plan if k.point != "time")
