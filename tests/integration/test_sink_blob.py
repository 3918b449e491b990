"""Blob sink against a real Azurite: every format read back exactly, atomic replace, manifest."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.errors import DataError, FatalError, RetriableError
from shared.model import Batch, Column, OutputFile, Window
from shared.settings import SinkConfig, StorageConfig
from shared.sinks import BlobSink, TableSink, build_sink
from shared.sinks.blob import BlockStager

W = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
NOW = datetime(2026, 11, 2, 11, 6, tzinfo=UTC)
COLUMNS = (
    Column("timestamp", "datetime"),
    Column("itemId", "guid"),
    Column("name", "string"),
    Column("count", "long"),
    Column("small", "int"),
    Column("duration", "real"),
    Column("success", "bool"),
    Column("elapsed", "timespan"),
    Column("props", "dynamic"),
)
FORMATS = [
    ("jsonl", "gzip"),
    ("jsonl", "none"),
    ("csv", "gzip"),
    ("csv", "none"),
    ("parquet", "snappy"),
    ("parquet", "zstd"),
    ("parquet", "none"),
]


def make_rows(n: int, seed: int = 0) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for i in range(n):
        k = i + seed
        ts = W.start + timedelta(microseconds=k * 1_234_567)
        rows.append(
            [
                ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{k % 10}Z",
                f"item-{seed}-{i:06d}",
                f'GET /orders/{k}?q="a,b"\n' + "ü" * (k % 5) + "x" * (k % 300),
                k * 1_000_003 if k % 7 else None,
                k % 1000 - 500,
                k / 7,
                k % 3 == 0,
                "00:00:01.5000000",
                {"env": "prod", "k": k, "tags": ["a", None, k % 2 == 0]} if k % 4 else None,
            ]
        )
    return rows


def batches(rows: list[list[Any]], size: int = 700) -> list[Batch]:
    return [Batch("requests", COLUMNS, rows[i : i + size]) for i in range(0, len(rows), size)]


def expected(fmt: str, row: list[Any], columns: tuple[Column, ...] = COLUMNS) -> Any:
    if fmt == "jsonl":
        return dict(zip([c.name for c in columns], row, strict=True))
    if fmt == "csv":
        out = []
        for value, col in zip(row, columns, strict=True):
            if value is None:
                out.append("")
            elif col.type == "bool":
                out.append("true" if value else "false")
            elif col.type == "dynamic":
                out.append(orjson.dumps(value).decode())
            else:
                out.append(str(value))
        return out
    out_p: dict[str, Any] = {}
    for value, col in zip(row, columns, strict=True):
        if value is None:
            out_p[col.name] = None
        elif col.type == "datetime":
            out_p[col.name] = datetime.fromisoformat(value[:26]).replace(tzinfo=UTC)  # 7th digit truncated
        elif col.type == "dynamic":
            out_p[col.name] = orjson.dumps(value).decode()
        else:
            out_p[col.name] = value
    return out_p


def decode(fmt: str, compression: str, data: bytes) -> tuple[list[str], list[Any]]:
    """Column names and rows, read with independent readers."""
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
        return table.column_names, table.to_pylist()
    if compression == "gzip":
        data = gzip.decompress(data)
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in data.splitlines()]
        return (list(rows[0]) if rows else []), rows
    header, *body = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    return header, body


@pytest.fixture()
def service(storage_conn: str) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_conn)


@pytest.fixture()
def container_name(unique: str) -> str:
    return f"sink-{unique}"


@pytest.fixture()
def make_sink(service: BlobServiceClient, storage_conn: str, container_name: str) -> Callable[..., BlobSink]:
    def make(fmt: str = "jsonl", compression: str = "gzip", **kw: Any) -> BlobSink:
        config = SinkConfig(
            kind="blob",
            storage=StorageConfig(setting="TestStorage", conn_string=storage_conn),
            container=container_name,
            format=fmt,  # type: ignore[arg-type]
            compression=compression,
            row_group_rows=kw.pop("row_group_rows", 1000),
            path=kw.pop("path", "{pipeline}/y={yyyy}/m={MM}/d={dd}/h={HH}/{window}"),
            gzip_level=kw.pop("gzip_level", 5),
        )
        return BlobSink(
            config,
            pipeline="orders",
            table="requests",
            service=service,
            clock=lambda: NOW,
            block_size=kw.pop("block_size", 64 * 1024),
        )

    return make


def download(container: ContainerClient, name: str) -> bytes:
    return container.download_blob(name).readall()


def names(container: ContainerClient) -> list[str]:
    return sorted(b.name for b in container.list_blobs())


def write(sink: BlobSink, rows_batches: list[Batch], part: str = "") -> list[OutputFile]:
    writer = sink.open(W, part=part)
    for b in rows_batches:
        writer.write(b)
    return writer.commit()


@pytest.mark.parametrize(("fmt", "compression"), FORMATS, ids=[f"{f}-{c}" for f, c in FORMATS])
def test_round_trip_every_format(make_sink: Callable[..., BlobSink], fmt: str, compression: str) -> None:
    sink = make_sink(fmt, compression)
    rows = make_rows(3000)
    [out] = write(sink, batches(rows))
    data = download(sink.container, out.name)
    assert out.name == f"orders/y=2026/m=11/d=02/h=10/20261102T100000Z{sink.extension}"
    assert out.rows == 3000 and out.bytes == len(data)
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    header, got = decode(fmt, compression, data)
    assert header == [c.name for c in COLUMNS]
    assert got == [expected(fmt, r) for r in rows]
    if fmt == "parquet":
        schema = pq.read_schema(io.BytesIO(data))
        assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        assert schema.field("count").type == pa.int64() and schema.field("small").type == pa.int64()
        assert schema.field("success").type == pa.bool_() and schema.field("duration").type == pa.float64()
        assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 3
    props = sink.container.get_blob_client(out.name).get_blob_properties()
    assert props.metadata["rows"] == "3000" and props.metadata["sha256"] == out.sha256
    committed, uncommitted = sink.container.get_blob_client(out.name).get_block_list("all")
    assert len(committed) >= 2 and not uncommitted  # streamed in blocks, nothing left over
    assert out.extra["columns"][0] == {"name": "timestamp", "type": "datetime"}


def test_rerun_replaces_at_the_same_name(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink("jsonl", "gzip")
    [first] = write(sink, batches(make_rows(500)))
    [second] = write(sink, batches(make_rows(200, seed=9000)))
    assert first.name == second.name
    assert names(sink.container) == [first.name]
    _, got = decode("jsonl", "gzip", download(sink.container, first.name))
    assert [r["itemId"] for r in got] == [f"item-9000-{i:06d}" for i in range(200)]


def test_same_input_gives_identical_bytes(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink("jsonl", "gzip")
    [a] = write(sink, batches(make_rows(300)))
    [b] = write(sink, batches(make_rows(300)))
    assert a.sha256 == b.sha256


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_gzip_level_changes_the_bytes_not_the_rows(make_sink: Callable[..., BlobSink], fmt: str) -> None:
    rows = make_rows(2000)
    [fast] = write(make_sink(fmt, "gzip", gzip_level=1), batches(rows))
    fast_bytes = download(make_sink(fmt).container, fast.name)
    [small] = write(make_sink(fmt, "gzip", gzip_level=9), batches(rows))
    small_bytes = download(make_sink(fmt).container, small.name)
    assert fast.name == small.name and len(fast_bytes) > len(small_bytes)
    assert decode(fmt, "gzip", fast_bytes) == decode(fmt, "gzip", small_bytes)
    assert gzip.decompress(fast_bytes) == gzip.decompress(small_bytes)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_abort_leaves_previous_output_intact(make_sink: Callable[..., BlobSink], fmt: str) -> None:
    sink = make_sink(fmt, "gzip" if fmt == "jsonl" else "snappy")
    [out] = write(sink, batches(make_rows(400)))
    before = download(sink.container, out.name)
    writer = sink.open(W)
    for b in batches(make_rows(5000, seed=1)):  # enough to stage blocks before the abort
        writer.write(b)
    writer.abort()
    assert download(sink.container, out.name) == before
    with pytest.raises(RuntimeError):
        writer.commit()
    # A writer that is simply dropped (a crash) changes nothing either.
    dropped = sink.open(W)
    dropped.write(batches(make_rows(3000, seed=2))[0])
    assert download(sink.container, out.name) == before
    # ...and the next run commits cleanly over the staged leftovers.
    [again] = write(sink, batches(make_rows(10, seed=3)))
    assert decode(fmt, "gzip", download(sink.container, again.name))[1] == [
        expected(fmt, r) for r in make_rows(10, seed=3)
    ]


def test_context_manager_aborts_on_error(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink()
    [out] = write(sink, batches(make_rows(10)))
    before = download(sink.container, out.name)
    with pytest.raises(ZeroDivisionError), sink.open(W) as writer:
        writer.write(batches(make_rows(10, seed=5))[0])
        raise ZeroDivisionError
    assert download(sink.container, out.name) == before


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_zero_row_window_deletes_stale_output(make_sink: Callable[..., BlobSink], fmt: str) -> None:
    sink = make_sink(fmt, "none")
    assert write(sink, batches(make_rows(50)))
    assert write(sink, []) == []
    writer = sink.open(W)
    writer.write(Batch("requests", COLUMNS, []))  # an empty batch is no data either
    assert writer.commit() == []
    assert names(sink.container) == []


def test_parts_get_their_own_names(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink("csv", "gzip")
    [main] = write(sink, batches(make_rows(20)))
    [late] = write(sink, batches(make_rows(5, seed=100)), part="late-0001")
    assert late.name == "orders/y=2026/m=11/d=02/h=10/20261102T100000Z-late-0001.csv.gz"
    assert late.extra["part"] == "late-0001"
    assert write(sink, [], part="late-0001") == []  # an empty late part removes only itself
    assert names(sink.container) == [main.name]


def test_manifest_lists_files_that_match_their_blobs(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink("parquet", "zstd")
    main = write(sink, batches(make_rows(1500)))
    late = write(sink, batches(make_rows(30, seed=7)), part="late-0001")
    m = sink.write_manifest(W, main + late, {"attempt": 1, "source": {"queries": 2}})
    assert m.name == "orders/y=2026/m=11/d=02/h=10/_20261102T100000Z.manifest.json"
    raw = download(sink.container, m.name)
    assert m.sha256 == hashlib.sha256(raw).hexdigest() and m.bytes == len(raw) and m.rows == 1530
    doc = orjson.loads(raw)
    assert doc["pipeline"] == "orders" and doc["table"] == "requests"
    assert doc["window"] == {"start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z", "key": "20261102T100000Z"}
    assert doc["format"] == "parquet" and doc["compression"] == "zstd"
    assert doc["written_at"] == "2026-11-02T11:06:00Z" and doc["info"]["source"] == {"queries": 2}
    assert doc["schema"] == [{"name": c.name, "type": c.type} for c in COLUMNS]
    assert doc["rows"] == 1530
    for entry in doc["files"]:
        data = download(sink.container, entry["name"])
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == pq.read_metadata(io.BytesIO(data)).num_rows
    assert [f["part"] for f in doc["files"]] == ["", "late-0001"]


def test_manifest_recovers_schema_for_bare_outputs(make_sink: Callable[..., BlobSink]) -> None:
    """The runner rebuilds earlier outputs from the ledger without ``extra``."""
    sink = make_sink("jsonl", "gzip")
    main = write(sink, batches(make_rows(10)))
    sink.write_manifest(W, main, {})
    late = write(sink, [Batch("requests", (Column("itemId"), Column("late", "bool")), [["x", True]])], part="late-0001")
    bare = [OutputFile(o.name, o.rows, o.bytes, o.sha256) for o in main + late]
    fresh = make_sink("jsonl", "gzip")  # another process: knows nothing but the previous manifest
    fresh.write_manifest(W, bare[:1], {})
    doc = orjson.loads(download(sink.container, fresh.manifest_name(W)))
    assert doc["schema"] == [{"name": c.name, "type": c.type} for c in COLUMNS]
    sink.open(W, part="late-0001").abort()  # a new run of this process finds the manifest `fresh` wrote
    sink.write_manifest(W, bare, {})  # this process remembers the late part's columns
    doc = orjson.loads(download(sink.container, sink.manifest_name(W)))
    assert doc["schema"][-1] == {"name": "late", "type": "bool"}
    assert doc["files"][1]["columns"] == ["itemId", "late"]


def test_empty_window_manifest(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink()
    m = sink.write_manifest(W, [], {})
    doc = orjson.loads(download(sink.container, m.name))
    assert doc["files"] == [] and doc["rows"] == 0 and doc["schema"] == []


def test_csv_schema_drift_continues_in_a_new_file(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink("csv", "gzip")
    a = (Column("itemId"), Column("n", "long"))
    b = (Column("n", "long"), Column("itemId"), Column("extra", "dynamic"))
    outs = write(
        sink,
        [
            Batch("t", a, [["r1", 1]]),
            Batch("t", (Column("itemId"),), [["r2"]]),  # missing column: same file
            Batch("t", b, [[3, "r3", {"x": 1}]]),  # new column: next file
            Batch("t", a, [["r4", 4]]),
        ],
    )
    assert [o.name.rsplit("/", 1)[1] for o in outs] == ["20261102T100000Z.csv.gz", "20261102T100000Z-s001.csv.gz"]
    assert [o.rows for o in outs] == [2, 2]
    assert decode("csv", "gzip", download(sink.container, outs[0].name)) == (["itemId", "n"], [["r1", "1"], ["r2", ""]])
    assert decode("csv", "gzip", download(sink.container, outs[1].name)) == (
        ["n", "itemId", "extra"],
        [["3", "r3", '{"x":1}'], ["4", "r4", ""]],
    )
    for o in outs:
        assert o.sha256 == hashlib.sha256(download(sink.container, o.name)).hexdigest()
    # A rerun without the drift removes the continuation file of the earlier run.
    [only] = write(sink, [Batch("t", a, [["r1", 1]])])
    assert names(sink.container) == [only.name]


def test_parquet_schema_drift(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink("parquet", "snappy", row_group_rows=1000)
    a = (Column("itemId"), Column("n", "long"))
    b = (Column("itemId"), Column("n", "long"), Column("flag", "bool"))
    first = [Batch("t", a, [[f"r{i}", i] for i in range(10)]), Batch("t", b, [["r10", 10, True]])]
    [one] = write(sink, first)  # drift inside the first row group: unified in one file
    table = pq.read_table(io.BytesIO(download(sink.container, one.name)))
    assert table.column_names == ["itemId", "n", "flag"]
    assert table.column("flag").to_pylist() == [None] * 10 + [True]
    second = [Batch("t", a, [[f"r{i}", i] for i in range(1000)]), Batch("t", b, [["late", 1, False]])]
    outs = write(sink, second)  # drift after a row group was written: continuation file
    assert [o.rows for o in outs] == [1000, 1]
    tables = [pq.read_table(io.BytesIO(download(sink.container, o.name))) for o in outs]
    assert tables[0].column_names == ["itemId", "n"]
    assert tables[1].to_pylist() == [{"itemId": "late", "n": 1, "flag": False}]
    assert write(sink, []) == []
    assert names(sink.container) == []


def test_container_is_created_and_blob_names_are_exact(
    make_sink: Callable[..., BlobSink], service: BlobServiceClient, container_name: str
) -> None:
    assert not service.get_container_client(container_name).exists()
    sink = make_sink("jsonl", "none", path="{table}/{window}_{window_end}")
    [out] = write(sink, batches(make_rows(3)))
    assert out.name == "requests/20261102T100000Z_20261102T110000Z.jsonl"
    assert service.get_container_client(container_name).exists()
    props = sink.container.get_blob_client(out.name).get_blob_properties()
    assert props.content_settings.content_type == "application/x-ndjson"


def test_remove(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink()
    [out] = write(sink, batches(make_rows(3)), part="late-0001")
    sink.remove(out.name)
    sink.remove(out.name)
    assert names(sink.container) == []


def test_big_single_write_is_split_into_blocks(service: BlobServiceClient, container_name: str) -> None:
    container = service.create_container(container_name)
    blob = container.get_blob_client("big.bin")
    stager = BlockStager(blob, block_size=100_000)
    payload = bytes(range(256)) * 2000  # 512,000 bytes in one write
    stager.write(payload)
    stager.write(b"tail")
    stager.finish()
    blob.commit_block_list(stager.block_ids)
    assert download(container, "big.bin") == payload + b"tail"
    assert len(stager.block_ids) == 6 and stager.size == len(payload) + 4
    assert stager.sha256 == hashlib.sha256(payload + b"tail").hexdigest()


def test_build_sink_factory(storage_conn: str, unique: str) -> None:
    storage = StorageConfig(setting="TestStorage", conn_string=storage_conn)
    blob = build_sink(SinkConfig(kind="blob", storage=storage, container=f"fac-{unique}"), pipeline="p", table="t")
    table = build_sink(SinkConfig(kind="table", storage=storage, container=f"fac{unique}"), pipeline="p", table="t")
    assert isinstance(blob, BlobSink) and isinstance(table, TableSink)
    writer = blob.open(W)
    writer.write(batches(make_rows(2))[0])
    [out] = writer.commit()
    assert out.name.endswith("20261102T100000Z.jsonl.gz")


def test_wrong_key_is_fatal(azurite: Any, unique: str) -> None:
    bad = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    storage = StorageConfig(setting="Bad", conn_string=bad)
    sink = BlobSink(
        SinkConfig(kind="blob", storage=storage, container=f"bad-{unique}"),
        pipeline="p",
        table="t",
        service=BlobServiceClient.from_connection_string(bad, retry_total=0),
    )
    with pytest.raises(FatalError, match="403"):
        writer = sink.open(W)
        writer.write(batches(make_rows(2))[0])
        writer.commit()


def test_unreachable_storage_is_retriable(unique: str) -> None:
    from devtools.azurite import ACCOUNT, KEY, free_port

    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/{ACCOUNT}"
    )
    sink = BlobSink(
        SinkConfig(kind="blob", storage=StorageConfig(setting="Down", conn_string=conn), container=f"down-{unique}"),
        pipeline="p",
        table="t",
        service=BlobServiceClient.from_connection_string(conn, retry_total=0),
    )
    with pytest.raises(RetriableError):
        sink.open(W)


def test_missing_blob_delete_is_fine(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink()
    sink.open(W).abort()
    sink.delete("never/was.jsonl.gz")
    with pytest.raises(ResourceNotFoundError):
        sink.container.get_blob_client("never/was.jsonl.gz").get_blob_properties()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_bad_batch_is_rejected_whole_and_the_writer_goes_on(make_sink: Callable[..., BlobSink], fmt: str) -> None:
    sink = make_sink(fmt, "none")
    good = make_rows(3)
    writer = sink.open(W)
    writer.write(Batch("requests", COLUMNS, good[:2]))
    with pytest.raises(DataError):
        writer.write(Batch("requests", COLUMNS, [good[2], ["too", "short"]]))
    writer.write(Batch("requests", COLUMNS, good[2:]))
    [out] = writer.commit()
    assert out.rows == 3
    assert decode(fmt, "none", download(sink.container, out.name))[1] == [expected(fmt, r) for r in good]


@pytest.mark.parametrize("existing", [False, True], ids=["new-name", "over-earlier-run"])
def test_stale_writer_cannot_replace_a_newer_commit(make_sink: Callable[..., BlobSink], existing: bool) -> None:
    """Fencing: a runner that stalled past its lease must not overwrite the new owner's output."""
    sink = make_sink("jsonl", "gzip")
    if existing:
        write(sink, batches(make_rows(50, seed=1)))
    stale = sink.open(W)  # opened first, then stalls
    for b in batches(make_rows(300, seed=2)):
        stale.write(b)
    [newer] = write(sink, batches(make_rows(120, seed=3)))  # the new owner commits meanwhile
    with pytest.raises(RetriableError, match="another runner wrote it"):
        stale.commit()
    _, got = decode("jsonl", "gzip", download(sink.container, newer.name))
    assert [r["itemId"] for r in got] == [f"item-3-{i:06d}" for i in range(120)]


def test_stale_zero_row_writer_keeps_a_newer_file(make_sink: Callable[..., BlobSink]) -> None:
    sink = make_sink("jsonl", "gzip")
    write(sink, batches(make_rows(10, seed=1)))
    stale = sink.open(W)  # will find no rows
    [newer] = write(sink, batches(make_rows(20, seed=4)))
    assert stale.commit() == []
    _, got = decode("jsonl", "gzip", download(sink.container, newer.name))
    assert len(got) == 20
