"""The fault suite's checker must see what it exists to see: a checker that always passes proves nothing.

A clean two-window run of the real engine passes; each sabotage (a leftover part, a stray
copy, a lost file, a file replaced after the ledger recorded it, a row in the wrong
window, a changed value) fails with the right counter.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import timedelta

import httpx
import orjson
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devtools.faultsuite_check import PipelineRange, Verdict, verify
from tests.conftest import T0, H, query_pipeline


def _move_two_windows(emulator, make_engine, storage_conn, unique) -> tuple[ContainerClient, Callable[[], Verdict]]:
    container = f"chk-{unique}"
    engine = make_engine([query_pipeline("requests", "requests", emulator, container)],
                         now=T0 + 2 * H + timedelta(minutes=5))
    report = engine.tick()
    assert report.failed == 0 and report.done == 2
    client = BlobServiceClient.from_connection_string(storage_conn).get_container_client(container)

    def check() -> Verdict:
        with httpx.Client(base_url=emulator.url) as control:
            return verify([PipelineRange("requests", "requests", T0, 2)], container=client, ledger=engine.ledger,
                          control=control)

    return client, check


def _data(client: ContainerClient) -> list[str]:
    return sorted(n for n in client.list_blob_names() if n.endswith(".jsonl.gz"))


def _rows(client: ContainerClient, name: str) -> list[bytes]:
    return gzip.decompress(client.download_blob(name).readall()).splitlines()


def test_a_clean_run_passes(emulator, make_engine, storage_conn, unique):
    _, check = _move_two_windows(emulator, make_engine, storage_conn, unique)
    verdict = check()
    assert verdict.ok, verdict.problems
    assert verdict.windows == verdict.windows_done == 2
    assert verdict.rows_out == verdict.rows_source == emulator.expected_count("requests", T0, T0 + 2 * H) > 0


def _leftover_part(client: ContainerClient, names: list[str]) -> None:
    data = client.download_blob(names[0]).readall()
    client.upload_blob(names[0].replace(".jsonl.gz", "-c0001.jsonl.gz"), data)


def _stray_copy(client: ContainerClient, names: list[str]) -> None:
    client.upload_blob("requests/copy.jsonl.gz", client.download_blob(names[0]).readall())


def _delete(client: ContainerClient, names: list[str]) -> None:
    client.delete_blob(names[0])


def _replace_short(client: ContainerClient, names: list[str]) -> None:
    rows = _rows(client, names[0])
    client.upload_blob(names[0], gzip.compress(b"\n".join(rows[1:]) + b"\n"), overwrite=True)


def _move_a_row(client: ContainerClient, names: list[str]) -> None:
    first, second = _rows(client, names[0]), _rows(client, names[1])
    client.upload_blob(names[0], gzip.compress(b"\n".join(first[1:]) + b"\n"), overwrite=True)
    client.upload_blob(names[1], gzip.compress(b"\n".join([*second, first[0]]) + b"\n"), overwrite=True)


def _change_a_value(client: ContainerClient, names: list[str]) -> None:
    rows = [orjson.loads(r) for r in _rows(client, names[0])]
    rows[0]["name"] = "changed"
    client.upload_blob(names[0], gzip.compress(b"\n".join(orjson.dumps(r) for r in rows) + b"\n"), overwrite=True)


@pytest.mark.parametrize(
    ("sabotage", "expect"),
    [
        (_leftover_part, {"duplicated": "first", "ledger_mismatches": 1}),
        (_stray_copy, {"duplicated": "first", "stray_blobs": 1}),
        (_delete, {"lost": "first", "ledger_mismatches": 1}),
        (_replace_short, {"lost": 1, "ledger_mismatches": 1}),
        (_move_a_row, {"misplaced": 1, "ledger_mismatches": 2}),
        (_change_a_value, {"mismatched": 1, "ledger_mismatches": 1}),
    ],
    ids=["leftover-part-is-duplicates", "stray-copy-is-duplicates", "missing-file-is-lost", "late-replaced-file",
         "row-in-wrong-window", "changed-value"],
)
def test_each_sabotage_fails_with_its_counter(emulator, make_engine, storage_conn, unique, sabotage, expect):
    client, check = _move_two_windows(emulator, make_engine, storage_conn, unique)
    names = _data(client)
    first_rows = len(_rows(client, names[0]))
    sabotage(client, names)
    verdict = check()
    assert not verdict.ok
    for counter, value in expect.items():
        assert getattr(verdict, counter) == (first_rows if value == "first" else value), (counter, verdict)
    assert verdict.problems


def test_a_window_closed_by_its_own_failure_holds_no_rows_and_passes_only_when_expected(
    emulator, make_engine, storage_conn, unique
):
    from datetime import timedelta

    from devtools.ai_emulator import ScopedFault
    from devtools.ai_emulator.timeutil import to_ticks
    from devtools.faultsuite_settle import closed_by_window
    from shared.model import Window

    container = f"chk-{unique}"
    pipeline = query_pipeline("requests", "requests", emulator, container, window={"max_attempts": 1})
    engine = make_engine([pipeline], now=T0 + 2 * H + timedelta(minutes=5))
    overflow = ScopedFault("overflow", "requests", to_ticks(T0), to_ticks(T0 + H))  # what the window's data causes
    emulator.faults.set_scoped([overflow])
    try:
        report = engine.tick()
    finally:
        emulator.faults.set_scoped([])
    assert sorted(r.outcome for r in report.results) == ["done", "failed"]
    state = engine.ledger.get("requests", Window(T0, T0 + H))
    assert closed_by_window(state)  # failed, FailKind window, no next attempt, the service's E_OVERFLOW
    client = BlobServiceClient.from_connection_string(storage_conn).get_container_client(container)
    spec = PipelineRange("requests", "requests", T0, 2)
    with httpx.Client(base_url=emulator.url) as control:
        expected = verify([spec], container=client, ledger=engine.ledger, control=control,
                          closed={("requests", state.key)})  # fmt: skip
        unexpected = verify([spec], container=client, ledger=engine.ledger, control=control)
    first = emulator.expected_count("requests", T0, T0 + H)
    assert expected.ok and expected.windows_closed == 1 and expected.windows_done == 1, expected.problems
    assert expected.rows_withheld == first and expected.lost == 0
    assert not unexpected.ok and unexpected.lost == first and unexpected.windows_done == 1
    assert unexpected.problems
