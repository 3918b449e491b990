"""The query budget's two pipeline settings: defaults, ranges, and which identity they name."""

from __future__ import annotations

import pytest

from shared.budget.registry import budget_table, key_of
from shared.errors import ConfigError
from shared.settings import QuerySourceConfig, load_settings
from tests.unit.test_settings import env, pipeline


def source(**over: object) -> QuerySourceConfig:
    raw = {"kind": "app_insights", "app_id": "abc-123", "query": "requests"} | over
    config = load_settings(env(pipeline(source=raw))).pipeline("requests").source
    assert isinstance(config, QuerySourceConfig)
    return config


def test_defaults_are_five_in_flight_and_180_per_30s():
    config = source()
    assert (config.max_concurrent_queries, config.max_requests_per_30s) == (5, 180)


def test_limits_are_read():
    config = source(max_concurrent_queries=2, max_requests_per_30s=40)
    assert (config.max_concurrent_queries, config.max_requests_per_30s) == (2, 40)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrent_queries", 0),
        ("max_concurrent_queries", 51),
        ("max_requests_per_30s", 0),
        ("max_requests_per_30s", 10_001),
        ("max_concurrent_queries", "5"),
    ],
    ids=["slots-0", "slots-51", "rate-0", "rate-10001", "slots-text"],
)
def test_out_of_range_is_a_config_error(field, value):
    with pytest.raises(ConfigError, match=field):
        source(**{field: value})


def test_key_setting_names_the_identity_not_the_secret():
    config = source(auth={"kind": "api_key", "setting": "AI_KEY"})
    assert config.auth.setting == "AI_KEY" and "AI_KEY" not in repr(key_of(config))
    other = source(auth={"kind": "entra"})
    assert key_of(config) != key_of(other)


def test_budget_table_sits_beside_the_ledger():
    settings = load_settings(env(pipeline(), MOVER_LEDGER_TABLE="x" * 63))
    assert budget_table(settings) == "x" * 57 + "budget"
