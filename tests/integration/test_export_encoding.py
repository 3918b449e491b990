"""Exported blobs in other text encodings, and records with nothing to move: decoded or set
aside with a reason, never counted as stray lines or moved as rows of nulls."""

from __future__ import annotations

import codecs
import random

import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from devtools import export_writer as ew
from shared.sources import export_blobs
from tests.integration.test_export_blobs import HOUR, WINDOW, drain, item_ids, make_source, quarantine_lines


@pytest.fixture()
def service(storage_conn) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_conn)


def records(n: int) -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        doc = ew.export_record("Requests", rng=rng, event_time=HOUR)
        doc["request"][0]["name"] = f"GET /caf\u00e9/\U0001f600/{i}"  # accents and a surrogate pair in UTF-16
        out.append(doc)
    return out


def upload(service, unique: str, data: bytes, blob: str = "b1") -> None:
    container = service.get_container_client(f"export-{unique}")
    if not container.exists():
        container.create_container()
    container.upload_blob(ew.export_folder("Requests", HOUR) + ew.export_blob_name(blob, HOUR), data)


@pytest.mark.parametrize(
    ("bom", "encoding"),
    [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF8, "utf-8")],
    ids=["utf-16-le", "utf-16-be", "utf-8-bom"],
)
def test_a_blob_with_a_byte_order_mark_is_decoded_into_the_same_rows(
    service, storage_conn, unique, monkeypatch, bom: bytes, encoding: str
) -> None:
    monkeypatch.setattr(export_blobs, "CHUNK_BYTES", 777)  # odd ranges: code units and pairs cut mid-way
    docs = records(40)
    text = "\r\n".join(orjson.dumps(d).decode() for d in docs) + "\r\n"
    upload(service, unique, bom + text.encode(encoding))
    source = make_source(storage_conn, f"export-{unique}", unique, batch_rows=100)
    rows = drain(source, source.read(WINDOW))
    assert item_ids(source, rows) == [d["internal"]["data"]["id"] for d in docs]
    names = [c.name for c in source.columns].index("name")
    assert [r[names] for r in rows] == [d["request"][0]["name"] for d in docs]
    assert (source.summary().source_count, source.summary().quarantined) == (40, 0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("\n".join(['{"request":[{"id":"x"}]}'] * 3).encode("utf-16-le"), "NUL bytes, no byte-order mark"),
        (codecs.BOM_UTF16_LE + '{"request":[{"id":"x"}]}\n'.encode("utf-16-le") + b"\x00\xdc\x41\x00", "UTF-16"),
    ],
    ids=["utf-16-without-bom", "broken-utf-16"],
)
def test_a_blob_that_is_not_text_goes_to_quarantine_whole_as_one_item(
    service, storage_conn, unique, data: bytes, reason: str
) -> None:
    good = orjson.dumps(records(1)[0]) + b"\n"
    upload(service, unique, data, blob="bad")
    upload(service, unique, good, blob="good")
    source = make_source(storage_conn, f"export-{unique}", unique)
    rows = drain(source, source.read(WINDOW))
    assert len(rows) == 1
    assert (source.summary().source_count, source.summary().quarantined) == (2, 1)
    [(name, [entry])] = quarantine_lines(service, unique).items()
    assert "bad" in name and reason in entry["reason"] and entry["line_no"] == 1


def test_a_record_with_an_empty_payload_is_quarantined_not_moved_as_nulls(service, storage_conn, unique) -> None:
    docs = records(3)
    docs[1]["request"] = []
    upload(service, unique, b"\n".join(orjson.dumps(d) for d in docs) + b"\n")
    source = make_source(storage_conn, f"export-{unique}", unique)
    rows = drain(source, source.read(WINDOW))
    assert item_ids(source, rows) == [docs[0]["internal"]["data"]["id"], docs[2]["internal"]["data"]["id"]]
    [(_, [entry])] = quarantine_lines(service, unique).items()
    assert "empty payload" in entry["reason"] and entry["line_no"] == 2
