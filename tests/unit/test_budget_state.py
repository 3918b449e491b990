"""The query budget's pure decisions: which slot, how long to wait, the packed request log."""

from __future__ import annotations

import random

import pytest

from shared.budget.state import (
    Grant,
    Limits,
    SlotView,
    Snapshot,
    Wait,
    budget_key,
    decide,
    pack_times,
    quota,
    unpack_times,
)

NOW = 1_800_000_000_000
P = 30_000


def snap(**slots: SlotView) -> Snapshot:
    return Snapshot({int(k[1:]): v for k, v in slots.items()})


@pytest.mark.parametrize(
    ("limits", "shares"),
    [
        (Limits(5, 180), [36] * 5),
        (Limits(5, 7), [2, 2, 1, 1, 1]),
        (Limits(5, 3), [1, 1, 1, 0, 0]),
        (Limits(1, 10_000), [10_000]),
    ],
    ids=["even", "remainder-first", "fewer-requests-than-slots", "one-slot"],
)
def test_quotas_sum_to_the_rate(limits, shares):
    assert [quota(limits, i) for i in range(limits.max_concurrent)] == shares
    assert sum(shares) == limits.max_requests


def test_empty_partition_grants_a_new_slot():
    out = decide(Snapshot({}), NOW, Limits(5, 180), random.Random(1))
    assert isinstance(out, Grant) and out.etag is None and out.times == [NOW] and 0 <= out.slot < 5


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (snap(s0=SlotView(NOW + 1, "a", [], "e0")), Wait("slots")),
        (snap(s0=SlotView(NOW, "a", [], "e0")), Grant(0, "e0", [NOW], NOW - P)),  # expired at now
        (snap(s0=SlotView(0, "", [NOW - 10], "e0")), Wait("rate", P - 10 + 1)),  # its one request is spent
        (snap(s0=SlotView(0, "", [NOW - P - 1], "e0")), Grant(0, "e0", [NOW], NOW - P)),  # left the span
        (snap(s0=SlotView(0, "", [NOW - P], "e0")), Wait("rate", 1)),  # both ends of the span count
    ],
    ids=["held", "expired", "rate-spent", "rate-aged-out", "span-inclusive"],
)
def test_one_slot_one_request(state, expected):
    assert decide(state, NOW, Limits(1, 1), random.Random(0)) == expected


def test_pause_wins_over_free_slots():
    state = Snapshot({}, paused_until=NOW + 2_500)
    assert decide(state, NOW, Limits(), random.Random(0)) == Wait("throttled", 2_500)


def test_only_free_slots_with_rate_left_are_granted():
    limits = Limits(3, 6)  # 2 per slot
    state = snap(
        s0=SlotView(NOW + 5_000, "busy", [], "e0"),
        s1=SlotView(0, "", [NOW - 100, NOW - 50], "e1"),  # free, rate spent
        s2=SlotView(0, "", [NOW - 100], "e2"),
    )
    for seed in range(20):
        out = decide(state, NOW, limits, random.Random(seed))
        assert out == Grant(2, "e2", [NOW - 100, NOW], NOW - P)


def test_many_instances_never_pass_the_rate():
    """Simulated grants at random instants: no closed 30 s span ever holds more than max_requests."""
    limits = Limits(4, 10)
    rng = random.Random(7)
    slots: dict[int, SlotView] = {}
    now, granted = NOW, []
    for _ in range(2_000):
        now += rng.randint(0, 900)
        out = decide(Snapshot(slots), now, limits, rng)
        if isinstance(out, Grant):
            slots[out.slot] = SlotView(0, "", out.times, "e")  # released at once
            granted.append(now)
    assert len(granted) > 100
    assert max(sum(1 for t in granted[i:] if t - g <= P) for i, g in enumerate(granted)) == 10


def test_log_packs_into_four_bytes_a_request():
    times = [NOW - P, NOW - 1, NOW]
    data = pack_times(times, NOW - P)
    assert len(data) == 12 and unpack_times(data, NOW - P) == times
    assert unpack_times(None, 0) == [] and unpack_times(b"", 5) == []


def test_budget_key_names_no_secret_and_separates_identities():
    a = budget_key("api_key", "MY_KEY_SETTING", "https://api.applicationinsights.io/")
    assert a == budget_key("api_key", "MY_KEY_SETTING", "https://API.applicationinsights.io")
    assert a != budget_key("api_key", "OTHER", "https://api.applicationinsights.io")
    assert a != budget_key("entra", None, "https://api.applicationinsights.io")
    assert a != budget_key("api_key", "MY_KEY_SETTING", "https://api.loganalytics.azure.com")
    assert "MY_KEY" not in a and len(a) == 25
