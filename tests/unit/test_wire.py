from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import FatalError
from shared.model import Column
from shared.sources.wire import convert_rows, error_reason, parse_result

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "query-api"


def test_sample_requests_response_is_typed():
    result = parse_result((SAMPLES / "requests-response.json").read_bytes())
    assert result.partial is None
    names = [c.name for c in result.columns]
    row = dict(zip(names, result.rows[0], strict=True))
    assert row["timestamp"] == "2026-11-02T10:05:45.733000Z"  # one canonical form for every source
    assert row["customDimensions"] == {"tenant": "contoso", "region": "westeurope"}
    assert row["success"] == "True"  # a string column in classic requests: left as the API types it
    assert row["duration"] == pytest.approx(9.1593)
    assert row["itemCount"] == 1


def test_partial_result_is_flagged():
    result = parse_result((SAMPLES / "partial-result-200.json").read_bytes())
    assert result.partial is not None
    assert "PartialError" in result.partial and "E_QUERY_RESULT_SET_TOO_LARGE" in result.partial


@pytest.mark.parametrize(
    ("ctype", "raw", "value"),
    [
        ("long", "42", 42),
        ("long", 42.0, 42),
        ("int", "", None),
        ("real", "1.5", 1.5),
        ("real", 2, 2.0),
        ("bool", "True", True),
        ("bool", "false", False),
        ("bool", 1, True),
        ("dynamic", '{"a":1}', {"a": 1}),
        ("dynamic", "[1,2]", [1, 2]),
        ("dynamic", "not json", "not json"),
        ("datetime", "2026-11-02T10:00:00Z", "2026-11-02T10:00:00Z"),
        ("guid", "x", "x"),
        ("string", None, None),
    ],
    ids=[
        "long-str",
        "long-float",
        "int-empty",
        "real-str",
        "real-int",
        "bool-True",
        "bool-false",
        "bool-int",
        "dyn-obj",
        "dyn-list",
        "dyn-bad",
        "datetime",
        "guid",
        "null",
    ],
)
def test_convert_cells(ctype, raw, value):
    assert convert_rows((Column("c", ctype),), [[raw]]) == [[value]]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"tables": []}', b'{"tables": [{"columns": []}]}'],
    ids=["text", "empty", "no-table", "no-rows"],
)
def test_malformed_body_is_fatal(body):
    with pytest.raises(FatalError):
        parse_result(body)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("bad-argument-400.json", "BadArgumentError"),
        ("forbidden-403.json", "InsufficientAccessError"),
        ("throttled-429.json", "ThrottledError"),
    ],
)
def test_error_reason(name, fragment):
    reason = error_reason((SAMPLES / name).read_bytes())
    assert fragment in reason
