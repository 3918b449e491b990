"""Deterministic synthetic telemetry with realistic shape and width.

Rows look like what the .NET / Node / Python SDKs send (W3C ids, roles, client geo,
customDimensions ~0.5 KB), so a requests row is ~1 KB of JSON — the width the
benchmark needs. The same ``seed`` and arguments always produce the same rows.

Speed matters (1M rows in seconds): value pools are built once, per-row work is a few
``random()`` calls, f-strings and one ``orjson.dumps`` of the cell list.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .schema import CLASSIC_TABLES
from .timeutil import TICKS_PER_SECOND, format_ticks

__all__ = ["GeneratedRows", "TelemetryGenerator"]

_REGIONS = ("westeurope", "northeurope", "eastus", "eastus2", "westus2", "uksouth")
_TENANTS = ("contoso", "fabrikam", "northwind", "adventureworks", "tailspin", "wingtip")
_CLIENTS = (
    ("Portland", "Oregon", "United States"),
    ("Seattle", "Washington", "United States"),
    ("Amsterdam", "North Holland", "Netherlands"),
    ("Dublin", "Leinster", "Ireland"),
    ("London", "England", "United Kingdom"),
    ("Paris", "Ile-de-France", "France"),
    ("Frankfurt am Main", "Hesse", "Germany"),
    ("São Paulo", "São Paulo", "Brazil"),
    ("Tokyo", "Tokyo", "Japan"),
    ("Sydney", "New South Wales", "Australia"),
)
_BROWSERS = (
    ("Chrome 130.0", "Windows 10", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"),
    ("Edge 130.0", "Windows 10", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0"),
    ("Safari 18.1", "Mac OS X 10.15", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
     "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"),
    ("Firefox 132.0", "Ubuntu", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) "
     "Gecko/20100101 Firefox/132.0"),
    ("Mobile Safari 18.1", "iOS 18.1", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
     "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
)  # fmt: skip
# (role, instance prefix, app version, sdk version)
_ROLES = (
    ("shop-api", "rd0003ff0000", "1.4.2", "dotnet:2.22.0-32"),
    ("checkout-worker", "checkout-7d9f8b6c4-", "2.0.1", "dotnetc:2.22.0-32"),
    ("catalog-svc", "catalog-5b7c9d-", "3.11.0", "python:1.0.0b30"),
    ("web-frontend", "web-6f4d8c-", "5.2.7", "node:2.9.1"),
)
# (method, route template, path template taking an int)
_ROUTES = (
    ("GET", "/api/orders", "/api/orders"),
    ("GET", "/api/orders/{id}", "/api/orders/{n}"),
    ("POST", "/api/orders", "/api/orders"),
    ("GET", "/api/products", "/api/products?page={n}"),
    ("GET", "/api/products/{id}", "/api/products/{n}"),
    ("PUT", "/api/cart/{id}", "/api/cart/{n}"),
    ("DELETE", "/api/cart/{id}", "/api/cart/{n}"),
    ("GET", "/health", "/health"),
    ("POST", "/api/checkout", "/api/checkout"),
    ("GET", "/api/customers/{id}/profile", "/api/customers/{n}/profile"),
)
_CODES = (("200", 0.86), ("201", 0.04), ("204", 0.02), ("304", 0.02), ("400", 0.015),
          ("401", 0.01), ("404", 0.02), ("500", 0.01), ("503", 0.005))  # fmt: skip
_DEPS = (
    ("SQL", "tcp:shop-sql.database.windows.net,1433", "shop-sql.database.windows.net | shopdb",
     "SELECT o.Id, o.Total, o.Status FROM dbo.Orders o WHERE o.CustomerId = @p0"),
    ("HTTP", "catalog-svc.internal", "GET /api/products/{id}",
     "https://catalog-svc.internal/api/products/{n}"),
    ("Azure blob", "shopassets.blob.core.windows.net", "GET shopassets",
     "https://shopassets.blob.core.windows.net/images/product-{n}.png"),
    ("Azure Service Bus", "shop-bus.servicebus.windows.net/orders", "Send",
     "sb://shop-bus.servicebus.windows.net/orders"),
    ("Redis", "shop-cache.redis.cache.windows.net:6380", "GET", "GET cart:{n}"),
)  # fmt: skip
_TRACES = (
    (1, "Processing order {n} for tenant {t}"),
    (1, "Cache miss for cart:{n}, loading from database"),
    (0, "Entering handler {r}"),
    (2, "Retrying call to catalog-svc (attempt 2 of 3) for product {n}"),
    (3, "Payment provider returned an error for order {n}: card_declined"),
    (1, "Request completed in {d} ms"),
)
_EXCEPTIONS = (
    ("System.InvalidOperationException", "Order {n} is already shipped", "Shop.Orders",
     "Shop.Orders.OrderService.Cancel"),
    ("System.Data.SqlClient.SqlException", "Execution Timeout Expired.  The timeout period "
     "elapsed prior to completion of the operation.", "System.Data.SqlClient",
     "System.Data.SqlClient.SqlCommand.ExecuteReader"),
    ("System.Net.Http.HttpRequestException", "Response status code does not indicate "
     "success: 503 (Service Unavailable).", "System.Net.Http",
     "System.Net.Http.HttpResponseMessage.EnsureSuccessStatusCode"),
    ("System.ArgumentNullException", "Value cannot be null. (Parameter 'customerId')",
     "Shop.Api", "Shop.Api.Controllers.CustomersController.Get"),
)  # fmt: skip
_EVENTS = ("OrderPlaced", "CartAbandoned", "CheckoutStarted", "PaymentCaptured", "UserSignedIn")
_PAGES = ("Home", "Product details", "Cart", "Checkout", "Order confirmation", "Account")
_LOCATIONS = ("West Europe", "North Europe", "East US", "UK South", "Southeast Asia")
_BUCKETS = ((250.0, "<250ms"), (500.0, "250ms-500ms"), (1000.0, "500ms-1sec"),
            (3000.0, "1sec-3sec"), (7000.0, "3sec-7sec"), (15000.0, "7sec-15sec"),
            (30000.0, "15sec-30sec"), (60000.0, "30sec-1min"), (120000.0, "1min-2min"),
            (300000.0, "2min-5min"))  # fmt: skip


# Placeholders a builder puts where each row needs its own value (see _template).
_M_TS, _M_OP, _M_SPAN, _M_PARENT, _M_ITEM = "@@t@@", "@@o@@", "@@s@@", "@@p@@", "@@i@@"
_TEMPLATES = 4096


def _template(cells: list[Any]) -> bytes:
    """Serialize a builder's cells into a ``bytes % mapping`` template."""
    raw = orjson.dumps(cells).replace(b"%", b"%%")
    for key in (b"t", b"o", b"s", b"p", b"i"):
        raw = raw.replace(b"@@" + key + b"@@", b"%(" + key + b")s")
    return raw


def _bucket(ms: float) -> str:
    for limit, name in _BUCKETS:
        if ms < limit:
            return name
    return ">=5min"


def _cum(weights: tuple[tuple[str, float], ...]) -> tuple[tuple[float, str], ...]:
    acc, out = 0.0, []
    for value, w in weights:
        acc += w
        out.append((acc, value))
    return tuple(out)


_CODES_CUM = _cum(_CODES)


@dataclass(frozen=True)
class GeneratedRows:
    """Parallel lists ready for :meth:`TelemetryStore.add`."""

    ts: list[int]
    ing: list[int]
    rows: list[bytes]


@dataclass(frozen=True)
class _Ctx:
    app_id: str
    app_name: str
    ikey: str


Builder = Callable[[random.Random, str, str], list[Any]]


class TelemetryGenerator:
    """Builds classic-schema rows for one application."""

    def __init__(self, app_id: str, app_name: str, ikey: str) -> None:
        self.ctx = _Ctx(app_id, app_name, ikey)
        self._builders: dict[str, Builder] = {
            "requests": self._request,
            "dependencies": self._dependency,
            "traces": self._trace,
            "exceptions": self._exception,
            "customEvents": self._event,
            "pageViews": self._page_view,
            "availabilityResults": self._availability,
        }
        for table, builder in self._builders.items():
            width = len(CLASSIC_TABLES[table].columns)
            probe = builder(random.Random(0), _M_TS, _M_OP)
            if len(probe) != width:  # guard against schema drift
                raise AssertionError(f"{table}: builder makes {len(probe)} cells, schema {width}")

    def generate(
        self,
        table: str,
        start: int,
        end: int,
        count: int,
        *,
        seed: int = 0,
        late_fraction: float = 0.0,
        latency: tuple[float, float] = (0.2, 5.0),
        late_delay: tuple[float, float] = (300.0, 3 * 3600.0),
    ) -> GeneratedRows:
        """``count`` rows with event ticks uniform in ``[start, end)``.

        Ingestion = event + ``latency`` seconds, or + ``late_delay`` seconds for a
        ``late_fraction`` of rows (drawn independently per row, deterministically).
        """
        builder = self._builders[table]
        if end <= start:
            raise ValueError("empty time range")
        if count <= 0:
            return GeneratedRows([], [], [])
        rng = random.Random(f"{table}:{seed}")
        # Rows are filled from up to _TEMPLATES distinct pre-serialized variants; the
        # per-row unique parts (time, ids) are %-substituted into the JSON bytes.
        templates = [_template(builder(rng, _M_TS, _M_OP)) for _ in range(min(count, _TEMPLATES))]
        ntpl = len(templates)
        rnd, bits = rng.random, rng.getrandbits
        span = end - start
        lat_lo = latency[0] * TICKS_PER_SECOND
        lat_span = (latency[1] - latency[0]) * TICKS_PER_SECOND
        late_lo = late_delay[0] * TICKS_PER_SECOND
        late_span = (late_delay[1] - late_delay[0]) * TICKS_PER_SECOND
        ts_out: list[int] = []
        ing_out: list[int] = []
        rows_out: list[bytes] = []
        # Timestamps first, sorted, so the store receives rows in order (no re-sort later).
        # Mostly millisecond precision like classic SDKs; some full 100 ns ticks (OTel).
        stamps: list[int] = []
        for _ in range(count):
            t = min(start + int(rnd() * span), end - 1)
            if rnd() < 0.7 and t - t % 10_000 >= start:
                t -= t % 10_000
            stamps.append(t)
        stamps.sort()
        for t in stamps:
            late = rnd() < late_fraction
            g = t + int(late_lo + rnd() * late_span if late else lat_lo + rnd() * lat_span)
            h = b"%032x" % bits(128)
            fill = {
                b"t": format_ticks(t).encode(),
                b"o": b"%032x" % bits(128),
                b"s": b"%016x" % bits(64),
                b"p": b"%016x" % bits(64),
                b"i": b"%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:]),
            }
            ts_out.append(t)
            ing_out.append(g)
            rows_out.append(templates[int(rnd() * ntpl)] % fill)
        return GeneratedRows(ts_out, ing_out, rows_out)

    # --- shared context --------------------------------------------------------------------

    def _context(self, rng: random.Random, op_name: str, op_id: str, parent: str) -> list[Any]:
        rnd = rng.random
        role, inst, version, sdk = _ROLES[int(rnd() * len(_ROLES))]
        city, state, country = _CLIENTS[int(rnd() * len(_CLIENTS))]
        browser, os_name, _ua = _BROWSERS[int(rnd() * len(_BROWSERS))]
        web = role == "web-frontend"
        user = f"{rng.getrandbits(40):010x}" if rnd() < 0.8 else ""
        return [
            op_name,
            op_id,
            parent,
            "Application Insights Availability Monitoring" if rnd() < 0.01 else "",
            f"{rng.getrandbits(48):012x}" if web else "",
            user,
            f"user{int(rnd() * 5000)}@contoso.com" if user and rnd() < 0.3 else "",
            "",
            version,
            "Browser" if web else "PC",
            "Other" if web else "",
            os_name if web else "",
            "0.0.0.0",
            city,
            state,
            country,
            browser if web else "",
            role,
            f"{inst}{int(rnd() * 4):02x}",
            self.ctx.app_id,
            self.ctx.app_name,
            self.ctx.ikey,
            sdk,
            _M_ITEM,
        ]

    @staticmethod
    def _dims(rng: random.Random, extra: dict[str, Any]) -> str:
        rnd = rng.random
        dims = {
            "tenant": _TENANTS[int(rnd() * len(_TENANTS))],
            "region": _REGIONS[int(rnd() * len(_REGIONS))],
            "AspNetCoreEnvironment": "Production",
            "DeploymentId": f"deploy-{int(rnd() * 40) + 100}",
        }
        dims.update(extra)
        return orjson.dumps(dims).decode()

    # --- per table -------------------------------------------------------------------------

    def _request(self, rng: random.Random, ts: str, op_id: str) -> list[Any]:
        rnd = rng.random
        method, route, path = _ROUTES[int(rnd() * len(_ROUTES))]
        n = int(rnd() * 100_000)
        path = path.replace("{n}", str(n))
        name = f"{method} {route}"
        r = rnd()
        code = "200"
        for limit, value in _CODES_CUM:
            if r < limit:
                code = value
                break
        duration = round(rng.lognormvariate(3.2, 1.1), 4)
        span_id = _M_SPAN
        ua = _BROWSERS[int(rnd() * len(_BROWSERS))][2]
        dims = self._dims(
            rng,
            {
                "_MS.ProcessedByMetricExtractors": "(Name:'Requests', Ver:'1.1')",
                "RequestPath": path,
                "HttpMethod": method,
                "UserAgent": ua,
                "ClientRequestId": f"{rng.getrandbits(64):016x}",
            },
        )
        meas = orjson.dumps({"ItemsInCart": int(rnd() * 9)}).decode() if rnd() < 0.2 else None
        parent = op_id if rnd() < 0.7 else _M_PARENT
        return [
            ts,
            span_id,
            "",
            name,
            f"https://shop-api.azurewebsites.net{path}",
            "True" if code[0] in "23" or code == "404" else "False",
            code,
            duration,
            _bucket(duration),
            dims,
            meas,
            *self._context(rng, name, op_id, parent),
            "request",
            1 if rnd() < 0.95 else 5,
        ]

    def _dependency(self, rng: random.Random, ts: str, op_id: str) -> list[Any]:
        rnd = rng.random
        typ, target, name, data = _DEPS[int(rnd() * len(_DEPS))]
        n = int(rnd() * 100_000)
        ok = rnd() < 0.96
        code = ("200" if typ != "SQL" else "0") if ok else ("503" if typ != "SQL" else "-2")
        duration = round(rng.lognormvariate(2.0, 1.0), 4)
        dims = self._dims(rng, {"DependencyKind": typ, "_MS.ProcessedByMetricExtractors":
                                "(Name:'Dependencies', Ver:'1.1')"})  # fmt: skip
        return [
            ts,
            _M_SPAN,
            target,
            typ,
            name,
            data.replace("{n}", str(n)),
            "True" if ok else "False",
            code,
            duration,
            _bucket(duration),
            dims,
            None,
            *self._context(rng, "GET /api/orders/{id}", op_id, _M_PARENT),
            "dependency",
            1,
        ]

    def _trace(self, rng: random.Random, ts: str, op_id: str) -> list[Any]:
        rnd = rng.random
        level, template = _TRACES[int(rnd() * len(_TRACES))]
        msg = (
            template.replace("{n}", str(int(rnd() * 100_000)))
            .replace("{t}", _TENANTS[int(rnd() * len(_TENANTS))])
            .replace("{r}", _ROUTES[int(rnd() * len(_ROUTES))][1])
            .replace("{d}", str(int(rnd() * 900)))
        )
        dims = self._dims(rng, {"CategoryName": "Shop.Api.Orders", "OriginalFormat": template})
        return [
            ts,
            msg,
            level,
            "trace",
            dims,
            None,
            *self._context(rng, "POST /api/orders", op_id, _M_PARENT),
            1,
        ]

    def _exception(self, rng: random.Random, ts: str, op_id: str) -> list[Any]:
        rnd = rng.random
        typ, msg, assembly, method = _EXCEPTIONS[int(rnd() * len(_EXCEPTIONS))]
        msg = msg.replace("{n}", str(int(rnd() * 100_000)))
        problem = f"{typ} at {method}"
        details = orjson.dumps(
            [{"outerId": "0", "message": msg, "type": typ, "id": str(int(rnd() * 9e7)),
              "parsedStack": [{"level": 0, "method": method, "assembly": assembly, "line": 0}]}]
        ).decode()  # fmt: skip
        return [
            ts,
            problem,
            "UserCode" if rnd() < 0.6 else "Unhandled",
            typ,
            msg,
            assembly,
            method,
            typ,
            msg,
            assembly,
            method,
            typ,
            msg,
            assembly,
            method,
            3,
            details,
            "exception",
            self._dims(rng, {"CategoryName": "Shop.Api"}),
            None,
            *self._context(rng, "POST /api/checkout", op_id, _M_PARENT),
            1,
        ]

    def _event(self, rng: random.Random, ts: str, op_id: str) -> list[Any]:
        rnd = rng.random
        name = _EVENTS[int(rnd() * len(_EVENTS))]
        meas = orjson.dumps({"Total": round(rnd() * 500, 2)}).decode()
        return [
            ts,
            name,
            "customEvent",
            self._dims(rng, {"Channel": "web" if rnd() < 0.7 else "mobile"}),
            meas,
            *self._context(rng, "POST /api/checkout", op_id, op_id),
            1,
        ]

    def _page_view(self, rng: random.Random, ts: str, op_id: str) -> list[Any]:
        rnd = rng.random
        name = _PAGES[int(rnd() * len(_PAGES))]
        duration = round(rng.lognormvariate(6.5, 0.6), 4)
        slug = name.lower().replace(" ", "-")
        return [
            ts,
            _M_SPAN,
            name,
            f"https://shop.contoso.com/{slug}",
            duration,
            _bucket(duration),
            "pageView",
            self._dims(rng, {"Referrer": "https://www.bing.com/"}),
            None,
            *self._context(rng, name, op_id, op_id),
            1,
        ]

    def _availability(self, rng: random.Random, ts: str, op_id: str) -> list[Any]:
        rnd = rng.random
        ok = rnd() < 0.98
        duration = round(rng.lognormvariate(5.0, 0.5), 4)
        return [
            ts,
            _M_SPAN,
            "home-page-ping",
            _LOCATIONS[int(rnd() * len(_LOCATIONS))],
            "True" if ok else "False",
            "Passed" if ok else "Request timed out after 30 seconds",
            float(int(rnd() * 50_000) + 1000),
            duration,
            _bucket(duration),
            "availabilityResult",
            self._dims(rng, {"WebtestArmResourceName": "home-page-ping-shop"}),
            None,
            *self._context(rng, "", op_id, op_id),
            1,
        ]
