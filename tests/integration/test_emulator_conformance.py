"""Microsoft's own client reads the emulator: ``azure-monitor-query``'s ``LogsQueryClient``.

If the SDK parses our success, PartialError and error responses into its models, the
emulator's wire format is the service's, not just what our engine happens to accept.

The SDK sends bearer tokens only and refuses them over plain http unless the call says
``enforce_https=False`` (an azure-core per-request option), which every call here passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsQueryResult, LogsQueryStatus

from devtools.ai_emulator import Emulator, EmulatorConfig, SettableClock

WS, TOKEN = "conformance-ws", "conformance-token"
T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
H = timedelta(hours=1)
NOW = T0 + 2 * H


class StaticToken:
    """The smallest ``TokenCredential``: always the emulator's dev token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator(EmulatorConfig(workspace_id=WS, token=TOKEN), clock=SettableClock(NOW))
    emulator.start()
    emulator.generate("AppRequests", T0, T0 + H, 400, seed=11)
    emulator.generate("AppTraces", T0, T0 + H, 150, seed=12)
    yield emulator
    emulator.stop()


@pytest.fixture()
def client(emu: Emulator) -> Iterator[LogsQueryClient]:
    with LogsQueryClient(StaticToken(TOKEN), endpoint=emu.url + "/v1", retry_total=0) as c:
        yield c
    emu.faults.clear()
    emu.config.max_rows = 500_000


WINDOW = (
    "AppRequests\n| where TimeGenerated >= datetime(2026-11-02T10:00:00Z) "
    "and TimeGenerated < datetime(2026-11-02T10:30:00Z)"
)


def test_success_is_a_logs_query_result(emu: Emulator, client: LogsQueryClient) -> None:
    result = client.query_workspace(WS, WINDOW, timespan=(T0, T0 + H), enforce_https=False)
    assert isinstance(result, LogsQueryResult) and result.status == LogsQueryStatus.SUCCESS
    [table] = result.tables
    expected = emu.expected("AppRequests", T0, T0 + timedelta(minutes=30))
    assert table.name == "PrimaryResult" and len(table.rows) == len(expected) > 50
    assert table.columns[:3] == ["TenantId", "TimeGenerated", "Id"]
    first = table.rows[0]
    assert first["Id"] == expected[0]["Id"] and first["_ItemId"] == expected[0]["_ItemId"]
    assert isinstance(first["TimeGenerated"], datetime) and T0 <= first["TimeGenerated"] < T0 + H
    assert isinstance(first["Success"], bool) and isinstance(first["DurationMs"], float)
    assert isinstance(first["Properties"], str)


@pytest.mark.parametrize(
    "timespan",
    [(T0, T0 + H), (T0, H), timedelta(hours=2), None],
    ids=["start-end", "start-duration", "duration-ending-now", "none"],
)
def test_every_sdk_timespan_form(emu: Emulator, client: LogsQueryClient, timespan: Any) -> None:
    result = client.query_workspace(WS, "AppTraces | summarize count()", timespan=timespan, enforce_https=False)
    assert isinstance(result, LogsQueryResult)
    assert result.tables[0].rows[0][0] == emu.expected_count("AppTraces", T0, T0 + H) == 150


def test_summarize_by_bin_types(client: LogsQueryClient) -> None:
    query = f"{WINDOW}\n| summarize count() by bin(TimeGenerated, 5m)"
    result = client.query_workspace(WS, query, timespan=None, enforce_https=False)
    assert isinstance(result, LogsQueryResult)
    table = result.tables[0]
    assert table.columns == ["TimeGenerated", "count_"] and table.columns_types == ["datetime", "long"]
    assert all(isinstance(r[0], datetime) and r[0].minute % 5 == 0 for r in table.rows)
    assert len(table.rows) == 6


def test_partial_error_is_a_logs_query_partial_result(emu: Emulator, client: LogsQueryClient) -> None:
    emu.config.max_rows = 7
    result = client.query_workspace(WS, WINDOW, timespan=None, enforce_https=False)
    assert isinstance(result, LogsQueryPartialResult) and result.status == LogsQueryStatus.PARTIAL
    assert len(result.partial_data[0].rows) == 7
    assert result.partial_error is not None and result.partial_error.code == "PartialError"
    assert result.partial_error.details and "E_QUERY_RESULT_SET_TOO_LARGE" in str(result.partial_error.details)


@pytest.mark.parametrize(
    ("query", "workspace", "fault", "status", "code"),
    [
        ("AppRequests | wher x", WS, None, 400, "BadArgumentError"),
        ("NoSuchTable", WS, None, 400, "BadArgumentError"),
        ("AppRequests | take 1", "other-ws", None, 404, "PathNotFoundError"),
        ("AppRequests | take 1", WS, 429, 429, "ThrottledError"),
        ("AppRequests | take 1", WS, 504, 504, "GatewayTimeout"),
    ],
    ids=["syntax", "semantic", "not-found", "throttled", "gateway-timeout"],
)
def test_errors_are_http_response_errors_with_the_code(
    emu: Emulator, client: LogsQueryClient, query: str, workspace: str, fault: int | None, status: int, code: str
) -> None:
    if fault:
        emu.faults.push(fault, retry_after=1)
    with pytest.raises(HttpResponseError) as info:
        client.query_workspace(workspace, query, timespan=None, enforce_https=False)
    assert info.value.status_code == status
    assert info.value.error is not None and info.value.error.code == code


def test_wrong_token_is_403(emu: Emulator) -> None:
    bad = LogsQueryClient(StaticToken("nope"), endpoint=emu.url + "/v1", retry_total=0)
    with bad, pytest.raises(HttpResponseError) as info:
        bad.query_workspace(WS, "AppRequests | take 1", timespan=None, enforce_https=False)
    assert info.value.status_code == 403
    assert info.value.error is not None and info.value.error.code == "InsufficientAccessError"


def test_sdk_retry_policy_rides_out_a_503(emu: Emulator) -> None:
    emu.faults.push(503, count=2)
    before = emu.stats.faults
    with LogsQueryClient(StaticToken(TOKEN), endpoint=emu.url + "/v1", retry_backoff_factor=0) as c:
        result = c.query_workspace(WS, "AppTraces | count", timespan=None, enforce_https=False)
    assert isinstance(result, LogsQueryResult) and result.tables[0].rows[0][0] == 150
    assert emu.stats.faults - before == 2


def test_credential_asked_for_the_endpoint_scope(emu: Emulator) -> None:
    cred = StaticToken(TOKEN)
    with LogsQueryClient(cred, endpoint=emu.url + "/v1", retry_total=0) as c:
        c.query_workspace(WS, "AppTraces | take 1", timespan=None, enforce_https=False)
    assert cred.scopes == [(f"{emu.url}/.default",)]
