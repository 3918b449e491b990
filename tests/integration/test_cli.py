"""``python -m shared`` drives the same engine: tick, status, replay (settings from the environment or a file)."""

from __future__ import annotations

import json

import pytest

from shared.frontends.cli import main, next_fire
from tests.conftest import TOKEN, blob_names, query_pipeline


@pytest.fixture()
def cli_env(monkeypatch, emulator, storage_conn, unique):
    pipeline = query_pipeline(
        "requests",
        "requests",
        emulator,
        f"out-{unique}",
        window={"end": "2026-11-02T02:00:00Z"},
        source={"retention": "P4383D"},  # the CLI runs on the real clock; the test data stay replayable
    )
    env = {
        "AzureWebJobsStorage": storage_conn,
        "TEST_TOKEN": TOKEN,
        "MOVER_PIPELINES": json.dumps({"pipelines": [pipeline]}),
        "MOVER_LEDGER_TABLE": f"cli{unique}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_tick_status_replay(cli_env, capsys, storage_conn, unique):
    assert main(["tick"]) == 0
    out = capsys.readouterr().out
    assert "requests 2026-11-02T00:00:00Z done" in out and "tick: 2 done, 0 failed, 0 deferred" in out
    assert len([n for n in blob_names(storage_conn, f"out-{unique}") if n.endswith(".jsonl.gz")]) == 2
    assert main(["status"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pipelines"][0]["counts"]["done"] == 2
    assert (
        main(["replay", "--pipeline", "requests", "--start", "2026-11-02T01:00:00Z", "--end", "2026-11-02T02:00:00Z"])
        == 0
    )
    assert "requests 2026-11-02T01:00:00Z done" in capsys.readouterr().out


def test_replay_errors_exit_2(cli_env, capsys):
    assert (
        main(["replay", "--pipeline", "nope", "--start", "2026-11-02T00:00:00Z", "--end", "2026-11-02T01:00:00Z"]) == 2
    )
    assert "unknown pipeline 'nope'" in capsys.readouterr().err
    assert (
        main(["replay", "--pipeline", "requests", "--start", "2026-11-02T02:00:00Z", "--end", "2026-11-02T01:00:00Z"])
        == 2
    )
    assert "'end' must be after 'start'" in capsys.readouterr().err


def test_a_queued_replay_that_cannot_reach_the_ledger_says_so_and_exits_2(cli_env, monkeypatch, capsys):
    from devtools.azurite import ACCOUNT, KEY, free_port

    port = free_port()  # nothing listens there: the state account is unreachable
    monkeypatch.setenv("AzureWebJobsStorage", f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                       f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
                       f"QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT}")  # fmt: skip
    args = ["replay", "--pipeline", "requests", "--start", "2026-11-02T00:00:00Z", "--end", "2026-11-02T01:00:00Z"]
    assert main([*args, "--mode", "queue"]) == 2
    err = capsys.readouterr().err
    assert "replay failed, nothing was requested" in err and "storage unreachable" in err
    assert "Traceback" not in err


def test_replay_outside_the_pipelines_windows_writes_nothing(cli_env, capsys):
    from shared.app import App
    from shared.settings import load_settings

    args = ["replay", "--pipeline", "requests", "--start", "0001-01-01T00:00:00Z", "--end", "0001-01-01T00:05:00Z"]
    assert main(args) == 2
    assert "before the pipeline's window start 2026-11-02T00:00:00Z" in capsys.readouterr().err
    engine = App(load_settings(cli_env))
    try:
        assert list(engine.ledger.states("requests")) == []
        assert engine.status()["errors"] == {}
    finally:
        engine.close()


def test_settings_file_like_func_start(cli_env, monkeypatch, tmp_path, capsys):
    values = dict(cli_env)
    for key in cli_env:
        monkeypatch.delenv(key)
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    assert main(["--settings", str(path), "tick"]) == 0
    assert "tick: 2 done" in capsys.readouterr().out


def test_invalid_settings_exit_2_with_every_problem(monkeypatch, capsys):
    monkeypatch.setenv("MOVER_PIPELINES", '{"pipelines": [{"name": "a", "window": {"size": "PT7M"}}]}')
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    assert main(["tick"]) == 2
    err = capsys.readouterr().err
    assert "pipeline 'a' source" in err and "'size' must divide a day" in err and "needs 'sink'" in err


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("0 */5 * * * *", "2026-11-02T10:07:13Z", "2026-11-02T10:10:00Z"),
        ("*/10 * * * * *", "2026-11-02T10:07:13Z", "2026-11-02T10:07:20Z"),
        ("0 0 * * * *", "2026-11-02T10:07:13Z", "2026-11-02T11:00:00Z"),
        ("*/15 * * * *", "2026-11-02T10:07:13Z", "2026-11-02T10:15:00Z"),
    ],
    ids=["ncrontab-5min", "ncrontab-10s", "hourly", "five-field-cron"],
)
def test_next_fire(schedule, after, expected):
    from shared.durations import parse_timestamp

    assert next_fire(schedule, parse_timestamp(after)) == parse_timestamp(expected)
