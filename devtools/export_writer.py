"""Dev data for the blob-export sources: continuous-export hour folders and diagnostic-settings PT1H.json.

Records follow the shapes of the samples (``shared/samples``: Export Data Model, workspace
resource logs) with varied values. Two ways to use it:

* from tests: ``write_export_hour`` / ``write_export_blob`` / ``append_diagnostic`` write exact,
  seeded amounts and return what they wrote (names, row counts, bad lines);
* live, for ``make run``: ``LiveExportWriter`` keeps delivering — a new blob per type about
  every ``every`` seconds into the current hour folder, appends to the current hour's
  ``PT1H.json``, and now and then a blob (or an append) into an hour that has already closed.

``python -m devtools.export_writer --connection "<conn>" --hours 3 --live`` does both from a shell.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

__all__ = [
    "APP",
    "BAD_LINES",
    "DIAGNOSTIC_KINDS",
    "EXPORT_TYPES",
    "IKEY",
    "RESOURCE_ID",
    "LiveExportWriter",
    "Written",
    "append_diagnostic",
    "dev_pipelines",
    "diagnostic_blob_name",
    "diagnostic_container",
    "diagnostic_prefix",
    "diagnostic_record",
    "export_blob_name",
    "export_folder",
    "export_prefix",
    "export_record",
    "main",
    "write_diagnostic_hour",
    "write_export_blob",
    "write_export_hour",
]

log = logging.getLogger(__name__)

APP = "shop"
IKEY = "11111111222233334444555555555555"  # instrumentation key without dashes, as in the folder name
RESOURCE_ID = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/SHOP-RG"
    "/PROVIDERS/MICROSOFT.INSIGHTS/COMPONENTS/SHOP-PROD"
)
EXPORT_TYPES = (
    "Requests", "Rdd", "Exceptions", "Messages", "Event", "PageViews", "PageViewPerformance", "Availability", "Metrics",
)  # fmt: skip
DIAGNOSTIC_KINDS = ("AppRequests", "AppDependencies", "AppTraces")
# One line of each way a line can be malformed: truncated JSON, no known payload, bad event time.
BAD_LINES: tuple[bytes, ...] = (
    b'{"request":[{"id":"truncated"',
    b'{"mystery":[{"x":1}],"context":{"data":{"eventTime":"2026-11-02T10:00:00Z"}}}',
    b'{"event":[{"name":"x"}],"context":{"data":{"eventTime":"yesterday"}}}',
)

_PATHS = ("/", "/cart", "/checkout", "/api/orders", "/api/items", "/product/42", "/search")
_METHODS = ("GET", "GET", "GET", "POST")
_CODES = (200, 200, 200, 200, 201, 204, 302, 404, 500)
_ROLES = (("shop-web", "WFWEB14B.fabrikam.net"), ("shop-web", "WFWEB14C.fabrikam.net"), ("shop-api", "rd0003ff000000"))
_CITIES = (
    ("North America", "United States", "Texas", "San Antonio"),
    ("Europe", "Netherlands", "North Holland", "Amsterdam"),
    ("Europe", "Germany", "Hesse", "Frankfurt"),
)
_TICKS_PER_MS = 10_000


@dataclass(frozen=True)
class Written:
    """What one call wrote: blob names, valid records and malformed lines."""

    names: tuple[str, ...] = ()
    rows: int = 0
    bad: int = 0
    item_ids: tuple[str, ...] = field(default=(), repr=False)

    def __add__(self, other: Written) -> Written:
        return Written(
            tuple(dict.fromkeys(self.names + other.names)), self.rows + other.rows, self.bad + other.bad,
            self.item_ids + other.item_ids,
        )


def _ts(value: datetime) -> str:
    """Seven fractional digits and a Z, as App Insights writes times."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# -- Export Data Model records ------------------------------------------------------------------
def _context(rng: random.Random, event_time: datetime, item_id: str, op_id: str, name: str) -> dict[str, Any]:
    role, instance = rng.choice(_ROLES)
    continent, country, province, city = rng.choice(_CITIES)
    return {
        "internal": {"data": {"id": item_id, "documentVersion": "1.61"}},
        "context": {
            "device": {"type": "PC", "screenResolution": {}, "roleInstance": instance, "roleName": role},
            "application": {"version": "1.4.2"},
            "location": {"continent": continent, "country": country, "clientip": "168.62.177.0",
                         "province": province, "city": city},
            "data": {"isSynthetic": False, "samplingRate": 100.0, "eventTime": _ts(event_time)},
            "user": {"isAuthenticated": False, "anonId": f"user{rng.randrange(1000):03d}",
                     "anonAcquisitionDate": "0001-01-01T00:00:00Z", "authAcquisitionDate": "0001-01-01T00:00:00Z",
                     "accountAcquisitionDate": "0001-01-01T00:00:00Z"},
            "operation": {"id": op_id, "parentId": op_id, "name": name},
            "cloud": {},
            "serverDevice": {},
            "custom": {"dimensions": [{"tenant": rng.choice(("contoso", "fabrikam"))}, {"region": "westeurope"}],
                       "metrics": []},
            "session": {"id": _guid(rng), "isFirst": rng.random() < 0.2},
        },
    }  # fmt: skip


def _duration(ticks: float) -> dict[str, float]:
    return {"value": ticks, "count": 1.0, "min": ticks, "max": ticks, "stdDev": 0.0, "sampledValue": ticks}


def export_record(export_type: str, *, rng: random.Random, event_time: datetime) -> dict[str, Any]:
    """One Export Data Model document of folder type ``export_type`` (``Requests``, ``Rdd`` …)."""
    method, path = rng.choice(_METHODS), rng.choice(_PATHS)
    op_name = f"{method} {path}"
    op_id = f"{rng.getrandbits(64):016x}"
    code = rng.choice(_CODES)
    ticks = float(rng.randrange(5, 4_000) * _TICKS_PER_MS + rng.randrange(_TICKS_PER_MS))
    doc = _context(rng, event_time, _guid(rng), op_id, op_name)
    url_data = {"host": "shop.example.com", "base": path}
    if export_type == "Requests":
        doc["request"] = [{
            "urlData": url_data | {"hashTag": ""}, "responseCode": code, "success": code < 400, "id": op_id,
            "name": op_name, "count": 1, "durationMetric": _duration(ticks), "url": path,
        }]
    elif export_type == "Rdd":
        doc["remoteDependency"] = [{
            "name": f"{method} /api/items", "id": f"|{op_id}.1.", "resultCode": str(code), "success": code < 400,
            "dependencyTypeName": "HTTP", "type": "Http", "async": False, "count": 1,
            "durationMetric": _duration(ticks), "url": "https://api.example.com/items",
            "urlData": {"host": "api.example.com", "base": "/items"},
        }]
    elif export_type == "Exceptions":
        kind = rng.choice(("System.NullReferenceException", "System.TimeoutException"))
        text = "Object reference not set to an instance of an object."
        doc["basicException"] = [{
            "exceptionType": kind, "message": text, "outerExceptionType": kind, "outerExceptionMessage": text,
            "handledAt": "UserCode", "hasFullStack": True, "id": str(rng.randrange(10**8)), "count": 1,
            "parsedStack": [{"level": 0, "method": "Shop.Cart.Total", "assembly": "Shop, Version=1.4.2.0",
                             "fileName": "Cart.cs", "line": rng.randrange(1, 200)}],
        }]
    elif export_type == "Messages":
        doc["message"] = [{
            "raw": f"Processing order {rng.randrange(10**6)}",
            "severityLevel": rng.choice(("Verbose", "Information", "Information", "Warning", "Error")),
            "loggerName": "Shop.Orders",
        }]
    elif export_type == "Event":
        doc["event"] = [{
            "name": rng.choice(("CheckoutCompleted", "CartViewed", "SearchRun")), "count": 1,
            "url": f"https://shop.example.com{path}", "urlData": url_data,
        }]
    elif export_type == "PageViews":
        doc["view"] = [{
            "name": rng.choice(("Home", "Cart", "Product")), "count": 1, "url": f"https://shop.example.com{path}",
            "durationMetric": {"value": ticks}, "urlData": url_data,
        }]
    elif export_type == "PageViewPerformance":
        send, receive = 10_000 * rng.randrange(1, 5), 10_000 * rng.randrange(1, 9)
        doc["clientPerformance"] = [{
            "name": rng.choice(("Home", "Cart")), "url": f"https://shop.example.com{path}",
            "total": {"value": ticks + send + receive}, "networkConnection": {"value": 0},
            "sendRequest": {"value": send}, "receiveRequest": {"value": receive}, "clientProcess": {"value": ticks},
        }]
    elif export_type == "Availability":
        passed = rng.random() < 0.9
        doc["availability"] = [{
            "testName": "home-ping", "testRunId": _guid(rng), "testTimestamp": _ts(event_time),
            "runLocation": rng.choice(("us-tx-sn1-azr", "emea-nl-ams-azr")), "result": "Pass" if passed else "Fail",
            "message": "" if passed else "Timeout", "count": 1,
            "availabilityMetric": {"name": "availability", "value": 1.0 if passed else 0.0},
            "durationMetric": {"name": "duration", "value": ticks},
        }]
    elif export_type == "Metrics":
        value = round(rng.random(), 6)
        doc["metric"] = []
        doc["context"]["custom"] = {
            "dimensions": [{"ProcessId": str(rng.randrange(1000, 9999))}],
            "metrics": [{"dispatchRate": {"value": value, "count": 1.0, "min": value, "max": value, "stdDev": 0.0,
                                          "sampledValue": value, "sum": value}}],
        }
    else:
        raise ValueError(f"unknown continuous-export type {export_type!r}; known: {', '.join(EXPORT_TYPES)}")
    return doc  # fmt: skip


def export_prefix(export_type: str, *, app: str = APP, ikey: str = IKEY) -> str:
    """The source ``prefix`` of a continuous-export type: ``<app>_<ikey>/<Type>``."""
    return f"{app}_{ikey}/{export_type}"


def export_folder(export_type: str, hour: datetime, *, app: str = APP, ikey: str = IKEY, nested: bool = False) -> str:
    """``<app>_<ikey>/<Type>/<yyyy-MM-dd>/<HH>/`` (``nested``: the older ``<yyyy>/<MM>/<dd>/<HH>/`` form)."""
    h = hour.astimezone(UTC)
    day = h.strftime("%Y/%m/%d") if nested else h.strftime("%Y-%m-%d")
    return f"{export_prefix(export_type, app=app, ikey=ikey)}/{day}/{h:%H}/"


def export_blob_name(blob_id: str, delivered: datetime) -> str:
    """``{blobId}_{yyyyMMdd_HHmmss}.blob``, as continuous export named its blobs."""
    return f"{blob_id}_{delivered.astimezone(UTC):%Y%m%d_%H%M%S}.blob"


def _ensure(container: ContainerClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        container.create_container()


def write_export_blob(
    container: ContainerClient,
    export_type: str,
    delivered: datetime,
    *,
    lines: int,
    seed: str | int = 0,
    bad: Sequence[bytes] = (),
    app: str = APP,
    ikey: str = IKEY,
    nested: bool = False,
    hour: datetime | None = None,
) -> Written:
    """One blob of ``lines`` records delivered at ``delivered`` (event times up to 2 minutes earlier).

    ``hour`` places it in another hour folder than its delivery time (a late blob); ``bad``
    lines are mixed in after the good ones.
    """
    rng = random.Random(f"{seed}:{export_type}:{delivered.isoformat()}")
    folder_hour = (hour or delivered).replace(minute=0, second=0, microsecond=0)
    name = export_folder(export_type, folder_hour, app=app, ikey=ikey, nested=nested) + export_blob_name(
        _guid(rng), delivered
    )
    body = bytearray()
    ids: list[str] = []
    for _ in range(lines):
        record = export_record(export_type, rng=rng, event_time=delivered - timedelta(seconds=rng.uniform(0, 120)))
        ids.append(record["internal"]["data"]["id"])
        body += orjson.dumps(record) + b"\n"
    for line in bad:
        body += line + b"\n"
    try:
        container.upload_blob(name, bytes(body), overwrite=True)
    except ResourceNotFoundError:  # first blob of a new container
        _ensure(container)
        container.upload_blob(name, bytes(body), overwrite=True)
    return Written((name,), lines, len(bad), tuple(ids))


def write_export_hour(
    container: ContainerClient,
    export_type: str,
    hour: datetime,
    *,
    blobs: int,
    lines_per_blob: int,
    seed: str | int = 0,
    bad_every: int = 0,
    app: str = APP,
    ikey: str = IKEY,
    nested: bool = False,
    workers: int = 8,
) -> Written:
    """``blobs`` blobs spread over the hour (``blobs=60`` ≈ one a minute), uploaded ``workers`` at a time.

    ``bad_every=n`` appends the ``BAD_LINES`` to every n-th blob.
    """
    from concurrent.futures import ThreadPoolExecutor

    _ensure(container)
    step = timedelta(hours=1) / max(blobs, 1)
    start = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    def one(i: int) -> Written:
        bad = BAD_LINES if bad_every and (i + 1) % bad_every == 0 else ()
        delivered = start + step * i + timedelta(microseconds=i)  # distinct even when two land in one second
        return write_export_blob(
            container, export_type, delivered, lines=lines_per_blob, seed=f"{seed}:{i}", bad=bad,
            app=app, ikey=ikey, nested=nested, hour=start,
        )

    total = Written()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for written in pool.map(one, range(blobs)):
            total = total + written
    return total


# -- diagnostic settings ---------------------------------------------------------------------------
def diagnostic_container(kind: str) -> str:
    """``insights-logs-<category>``: the container a diagnostic setting writes ``kind`` to."""
    return f"insights-logs-{kind.lower()}"


def diagnostic_prefix(resource_id: str = RESOURCE_ID) -> str:
    """The source ``prefix``: ``resourceId=/SUBSCRIPTIONS/…/COMPONENTS/<name>``."""
    return f"resourceId={resource_id}"


def diagnostic_blob_name(hour: datetime, *, resource_id: str = RESOURCE_ID) -> str:
    h = hour.astimezone(UTC)
    return f"{diagnostic_prefix(resource_id)}/y={h:%Y}/m={h:%m}/d={h:%d}/h={h:%H}/m=00/PT1H.json"


def diagnostic_record(
    kind: str, *, rng: random.Random, time: datetime, resource_id: str = RESOURCE_ID
) -> dict[str, Any]:
    """One workspace-schema resource-log line (``AppRequests``, ``AppDependencies``, ``AppTraces``)."""
    role, instance = rng.choice(_ROLES)
    op_id = f"{rng.getrandbits(128):032x}"
    method, path = rng.choice(_METHODS), rng.choice(_PATHS)
    code = rng.choice(_CODES)
    ms = round(rng.uniform(0.5, 4000.0), 4)
    common: dict[str, Any] = {
        "time": _ts(time), "resourceId": resource_id, "ResourceGUID": "00000000-0000-0000-0000-0000000000aa",
        "Type": kind, "AppRoleInstance": instance, "AppRoleName": role, "ClientIP": "0.0.0.0", "ClientType": "PC",
        "IKey": "11111111-2222-3333-4444-555555555555", "OperationId": op_id, "_BilledSize": rng.randrange(400, 1500),
        "SDKVersion": "azurefunctions: 4.1036.1.0", "ItemCount": 1,
    }
    if kind == "AppRequests":
        return common | {
            "ClientCity": "Portland", "ClientCountryOrRegion": "United States", "ClientStateOrProvince": "Oregon",
            "OperationName": f"{method} {path}", "ParentId": op_id,
            "Properties": {"LogLevel": "Information", "HttpPath": path, "Category": "Host.Results",
                           "HttpMethod": method},
            "Id": f"{rng.getrandbits(64):016x}", "Name": f"{method} {path}",
            "Url": f"https://shop-api.azurewebsites.net{path}", "Success": code < 400, "ResultCode": str(code),
            "DurationMs": ms,
        }
    if kind == "AppDependencies":
        return common | {
            "OperationName": f"{method} {path}", "ParentId": op_id, "Id": f"{rng.getrandbits(64):016x}",
            "Target": "api.example.com", "DependencyType": "HTTP", "Name": f"{method} /items",
            "Data": "https://api.example.com/items", "Success": code < 400, "ResultCode": str(code), "DurationMs": ms,
            "Properties": {"Category": "Host.Results"},
        }
    if kind == "AppTraces":
        return common | {
            "Properties": {"Category": "Function.Orders", "LogLevel": "Information"},
            "Message": f"Executed 'Functions.Orders' (Succeeded, Duration={int(ms)}ms)",
            "SeverityLevel": rng.choice((0, 1, 1, 2, 3)),
        }
    raise ValueError(f"unknown diagnostic kind {kind!r}; known: {', '.join(DIAGNOSTIC_KINDS)}")  # fmt: skip


def append_diagnostic(
    container: ContainerClient,
    kind: str,
    hour: datetime,
    *,
    lines: int,
    seed: str | int = 0,
    received: datetime | None = None,
    bad: Sequence[bytes] = (),
    resource_id: str = RESOURCE_ID,
) -> Written:
    """Append ``lines`` records (one append block) to the hour's ``PT1H.json``, creating it if missing.

    Record times are up to 5 minutes before ``received`` (default: inside ``hour``).
    """
    _ensure(container)
    name = diagnostic_blob_name(hour, resource_id=resource_id)
    blob = container.get_blob_client(name)
    with contextlib.suppress(ResourceExistsError):
        blob.create_append_blob(if_none_match="*")
    start = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    at = received or start + timedelta(minutes=30)
    rng = random.Random(f"{seed}:{kind}:{at.isoformat()}:{lines}")
    body = bytearray()
    for _ in range(lines):
        body += orjson.dumps(diagnostic_record(kind, rng=rng, time=at - timedelta(seconds=rng.uniform(0, 300)),
                                               resource_id=resource_id)) + b"\n"
    for line in bad:
        body += line + b"\n"
    for i in range(0, len(body), 4 * 1024 * 1024):  # an append block holds at most 4 MiB
        blob.append_block(bytes(body[i : i + 4 * 1024 * 1024]))
    return Written((name,), lines, len(bad))


def write_diagnostic_hour(
    container: ContainerClient,
    kind: str,
    hour: datetime,
    *,
    appends: int,
    lines_per_append: int,
    seed: str | int = 0,
    resource_id: str = RESOURCE_ID,
) -> Written:
    """A ``PT1H.json`` grown by ``appends`` appends spread over the hour."""
    start = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    total = Written()
    for i in range(appends):
        received = start + timedelta(hours=1) * (i + 0.5) / appends
        total = total + append_diagnostic(
            container, kind, start, lines=lines_per_append, seed=f"{seed}:{i}", received=received,
            resource_id=resource_id,
        )
    return total


# -- live mode ---------------------------------------------------------------------------------------
def dev_pipelines(
    start: datetime,
    *,
    export_container: str = "export",
    sink_container: str = "telemetry",
    export_types: Iterable[str] = ("Requests", "Rdd"),
    diagnostic_kinds: Iterable[str] = ("AppRequests",),
) -> list[dict[str, Any]]:
    """Pipelines reading what ``LiveExportWriter`` writes (hourly windows from ``start``)."""
    window = {"size": "PT1H", "start": start.strftime("%Y-%m-%dT%H:00:00Z"), "max_per_tick": 24}
    out: list[dict[str, Any]] = []
    for export_type in export_types:
        out.append({
            "name": f"ce-{export_type.lower()}",
            "source": {"kind": "continuous_export", "container": export_container, "prefix": export_prefix(export_type),
                       "late_lookback": "PT6H"},
            "window": window | {"delay": "PT5M"},
            "sink": {"container": sink_container},
        })
    for kind in diagnostic_kinds:
        out.append({
            "name": f"ds-{kind.lower()}",
            "source": {"kind": "diagnostic_settings", "container": diagnostic_container(kind),
                       "prefix": diagnostic_prefix(), "late_lookback": "PT6H"},
            "window": window | {"delay": "PT15M"},
            "sink": {"container": sink_container},
        })
    return out  # fmt: skip


class LiveExportWriter:
    """Keeps delivering export blobs like a live App Insights resource would (a background thread).

    Every ``every`` seconds: one new blob per continuous-export type in the current hour
    folder, one append per diagnostic kind to the current hour's ``PT1H.json``; with
    probability ``late_fraction`` also a blob / an append into the previous, closed hour.
    """

    def __init__(
        self,
        service: BlobServiceClient,
        *,
        export_container: str = "export",
        export_types: Sequence[str] = ("Requests", "Rdd"),
        diagnostic_kinds: Sequence[str] = ("AppRequests",),
        every: float = 60.0,
        lines: int = 20,
        late_fraction: float = 0.1,
        seed: int = 0,
        resource_id: str = RESOURCE_ID,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._resource_id = resource_id
        self._export = service.get_container_client(export_container)
        self._diagnostic = {k: service.get_container_client(diagnostic_container(k)) for k in diagnostic_kinds}
        self._types = tuple(export_types)
        self._every = every
        self._lines = lines
        self._late = late_fraction
        self._rng = random.Random(seed)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = Written()
        self.late = 0

    def step(self) -> Written:
        """One round of deliveries (what the thread does every ``every`` seconds)."""
        now = self._clock()
        hour = now.replace(minute=0, second=0, microsecond=0)
        total = Written()
        _ensure(self._export)
        for export_type in self._types:
            seed = self._rng.getrandbits(32)
            total = total + write_export_blob(self._export, export_type, now, lines=self._lines, seed=seed)
            if self._rng.random() < self._late:
                total = total + write_export_blob(
                    self._export, export_type, now, lines=self._lines, seed=seed + 1, hour=hour - timedelta(hours=1)
                )
                self.late += 1
        for kind, container in self._diagnostic.items():
            seed = self._rng.getrandbits(32)
            total = total + append_diagnostic(
                container, kind, hour, lines=self._lines, seed=seed, received=now, resource_id=self._resource_id
            )
            if self._rng.random() < self._late:
                previous = hour - timedelta(hours=1)
                total = total + append_diagnostic(
                    container, kind, previous, lines=self._lines, seed=seed + 1,
                    received=previous + timedelta(minutes=59), resource_id=self._resource_id,
                )
                self.late += 1
        self.written = self.written + Written((), total.rows, total.bad)
        return total

    def start(self) -> LiveExportWriter:
        self._thread = threading.Thread(target=self._run, name="export-writer", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except (ResourceNotFoundError, OSError) as exc:  # storage restarting: keep going
                log.warning("export writer: %s", exc)
            except Exception:  # a dev helper thread must not die silently
                log.exception("export writer failed")
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write continuous-export and diagnostic-settings dev data")
    parser.add_argument("--connection", required=True, help="storage connection string (e.g. Azurite's)")
    parser.add_argument("--container", default="export", help="continuous-export container (default export)")
    parser.add_argument("--hours", type=int, default=2, help="closed hours of history to write (default 2)")
    parser.add_argument("--blobs", type=int, default=60, help="blobs per hour and type (default 60)")
    parser.add_argument("--lines", type=int, default=20, help="records per blob / append (default 20)")
    parser.add_argument("--live", action="store_true", help="then keep writing until Ctrl-C")
    parser.add_argument("--every", type=float, default=60.0, help="live: seconds between deliveries")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    service = BlobServiceClient.from_connection_string(args.connection)
    export = service.get_container_client(args.container)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for h in range(args.hours, 0, -1):
        hour = now - timedelta(hours=h)
        for export_type in ("Requests", "Rdd"):
            w = write_export_hour(export, export_type, hour, blobs=args.blobs, lines_per_blob=args.lines, seed=h)
            print(f"{export_type:>12} {hour:%Y-%m-%d %H}:00  {len(w.names)} blobs, {w.rows} rows")
        diag = service.get_container_client(diagnostic_container("AppRequests"))
        w = write_diagnostic_hour(diag, "AppRequests", hour, appends=args.blobs, lines_per_append=args.lines, seed=h)
        print(f"{'AppRequests':>12} {hour:%Y-%m-%d %H}:00  PT1H.json, {w.rows} rows")
    if args.live:
        writer = LiveExportWriter(service, export_container=args.container, every=args.every, lines=args.lines).start()
        print("writing live; Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        writer.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
