"""Session fixtures: one real Azurite and one query API emulator for the run; fresh names per test."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ai_emulator import Emulator, EmulatorConfig
from devtools.azurite import Azurite
from shared.app import App
from shared.model import Column
from shared.runtime.storage import queue_client
from shared.settings import load_settings
from shared.sources.wire import convert_rows


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A ``kill`` (SIGTERM) of the test run stops it as Ctrl-C does: fixture teardowns and the fault
    suite's ``finally`` stop the Azurite, emulator, planner and worker processes they started in
    their own sessions. Python's default for SIGTERM exits at once and left them running."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


APP_ID = "test-app"
TOKEN = "test-token"
T0 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)
# MOVER_TEST_AUTH=managed_identity|entra: query pipelines authenticate through devtools.identity (a local
# managed-identity endpoint) instead of the dev token; `make integration-identity` runs the suite so.
TEST_AUTH = os.environ.get("MOVER_TEST_AUTH", "token")
IDENTITY_KEY = "session-identity-signing-key-0123456789"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


@pytest.fixture()
def storage_conn(azurite: Azurite) -> str:
    """Connection string of the session's Azurite (SDK-ready, no trailing ';')."""
    return azurite.connection_string


@pytest.fixture()
def unique() -> str:
    """A short unique suffix for container/table names so tests never share state."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The query API emulator with a stable history: 3 tables × 2 days from T0 (seeded, deterministic)."""
    emu = Emulator(EmulatorConfig(app_id=APP_ID, workspace_id="test-ws", api_key="test-key", token=TOKEN))
    emu.start()
    for seed, (table, per_hour) in enumerate((("requests", 40), ("dependencies", 25), ("traces", 30)), start=1):
        emu.generate(table, T0, T0 + 48 * H, count=48 * per_hour, seed=seed)
    with _identity(emu):
        yield emu
    emu.stop()


@contextlib.contextmanager
def _identity(emu: Emulator) -> Iterator[None]:
    """With ``MOVER_TEST_AUTH`` set: a session token endpoint in the environment, trusted by ``emu``."""
    if TEST_AUTH == "token":
        yield
        return
    from devtools.identity import IdentityEndpoint

    with IdentityEndpoint(IDENTITY_KEY) as endpoint, pytest.MonkeyPatch.context() as mp:
        for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
            mp.delenv(name, raising=False)
        for name, value in {**endpoint.env(), "AZURE_TOKEN_CREDENTIALS": "prod"}.items():
            mp.setenv(name, value)
        emu.config.token_key = IDENTITY_KEY
        yield


def query_pipeline(name: str, table: str, emu: Emulator, container: str, **over: Any) -> dict[str, Any]:
    """A query-API pipeline against the emulator (token auth), hourly from T0."""
    window = {"size": "PT1H", "start": "2026-11-02T00:00:00Z", "delay": "PT5M", "max_per_tick": 100}
    window.update(over.pop("window", {}))
    source = {
        "kind": "app_insights",
        "app_id": APP_ID,
        "endpoint": emu.url,
        "query": table,
        "auth": {"kind": "token", "setting": "TEST_TOKEN"} if TEST_AUTH == "token" else {"kind": TEST_AUTH},
        "max_retries": 3,
    }
    source.update(over.pop("source", {}))
    return {"name": name, "source": source, "window": window, "sink": {"container": container}} | over


@pytest.fixture()
def make_engine(storage_conn: str, unique: str) -> Iterator[Callable[..., App]]:
    """Build engines on the session Azurite with a per-test ledger table; closes them after the test."""
    engines: list[App] = []

    def build(
        pipelines: list[dict[str, Any]],
        *,
        now: datetime | Callable[[], datetime] | None = None,
        owner: str | None = None,
        **settings: str,
    ) -> App:
        env = {
            "AzureWebJobsStorage": storage_conn,
            "TEST_TOKEN": TOKEN,
            "MOVER_PIPELINES": json.dumps({"pipelines": pipelines}),
            "MOVER_LEDGER_TABLE": f"ledger{unique}",
            "MOVER_QUARANTINE_CONTAINER": f"quarantine-{unique}",
            "MOVER_DISPATCH": "inline",
            "MOVER_QUEUE_NAME": f"work-{unique}",
        } | settings
        clock = now if callable(now) else (lambda: now) if now else (lambda: T0 + 48 * H + timedelta(minutes=10))
        engine = App(load_settings(env), clock=clock, owner=owner, sleep=lambda s: None)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


def read_jsonl_gz(conn: str, container: str, name: str) -> list[dict[str, Any]]:
    data = BlobServiceClient.from_connection_string(conn).get_blob_client(container, name).download_blob().readall()
    return [orjson.loads(line) for line in gzip.decompress(data).splitlines()]


def blob_names(conn: str, container: str, prefix: str = "") -> list[str]:
    client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    return sorted(client.list_blob_names(name_starts_with=prefix or None))


def take(engine: Any) -> list[str]:
    """Every message waiting on the engine's work queue (received and deleted, as a worker would),
    once the top-ups its workers asked for have run."""
    assert engine.handler.top_ups.wait(), "top-ups still running after 60 s"
    client = queue_client(engine.settings.state, engine.settings.queue_name)
    bodies = []
    while batch := list(client.receive_messages(max_messages=32, visibility_timeout=60)):
        for message in batch:
            bodies.append(message.content)
            client.delete_message(message)
    return bodies


def expected_rows(emu: Emulator, table: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """What the API returns for the window, brought to the engine's canonical types."""
    from devtools.ai_emulator.schema import resolve_table

    schema = resolve_table(table)
    columns = tuple(Column(c.name, c.type) for c in schema.columns)
    rows = [[r[c.name] for c in columns] for r in emu.expected(table, start, end)]
    return [dict(zip([c.name for c in columns], row, strict=True)) for row in convert_rows(columns, rows)]


def verify_of(app: App, pipeline: Any, rng: Any, **kw: Any) -> Any:
    """``shared.ops.verify.verify`` with the app's collaborators for ``pipeline`` (as the front ends call it)."""
    from shared.ops.verify import verify

    return verify(app.ledger, app.source(pipeline), app.sinks(pipeline), pipeline, rng, now=app.clock(), **kw)


def estimate_of(app: App, pipeline: Any, rng: Any, **kw: Any) -> Any:
    """``shared.ops.estimate.estimate`` with the app's source for ``pipeline``."""
    from shared.ops.estimate import estimate

    return estimate(app.source(pipeline), pipeline, rng, **kw)
