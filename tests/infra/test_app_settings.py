"""The template's app settings and the settings the code reads stay in step.

What the engine reads is taken from the code (every string literal that is exactly a
``MOVER_*`` name, and the ``<connection>__<suffix>`` forms the connection resolver builds),
so a setting added to the engine later fails here until the template sets it or it is
listed in ``DEFAULTED`` with a reason. Settings only the Functions host or a library reads
are in ``HOST_SETTINGS``, each with its reader.
"""

from __future__ import annotations

import json
import re

import pytest

from shared.settings import load_settings
from tests.infra import bicep

# Read by the host or a library, not by the engine: the template must set each of these.
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential": "host: makes AzureWebJobsStorage identity-based ('managedidentity')",
    "AZURE_CLIENT_ID": "azure-identity DefaultAzureCredential: selects the user-assigned identity for `entra` sources",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "host and OpenTelemetry exporter: where the app's own telemetry goes",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "host and shared/telemetry.py: send with the identity (Entra-only)",
}

# App settings the template leaves at the engine's default on purpose.
DEFAULTED = {
    "MOVER_STATE_CONNECTION_SETTING": "the ledger and quarantine live on the state account (AzureWebJobsStorage)",
    "MOVER_MAX_CONCURRENCY": "4 windows per tick fits 2 GB instances; raise through extraAppSettings",
    "MOVER_TIME_BUDGET": "PT4M stays below host.json's functionTimeout (10 min)",
    "MOVER_CHECKPOINT_AFTER": "PT8M stays below host.json's functionTimeout (10 min)",
    "MOVER_REPLAY_MAX_WINDOWS": "a month of hourly windows per replay request is the documented default",
    "MOVER_REPLAY_INLINE_WINDOWS": "6 inline windows keep an HTTP replay well under the 230 s response limit",
    "MOVER_MEMORY_BUDGET_MB": "derived from MOVER_INSTANCE_MEMORY_MB (set from instanceMemoryMB): 1/64 of it",
    "MOVER_QUERY_HANDOFF_MS": "500 ms covers a worker's gap between sub-queries; other instances wait at most that",
    "MOVER_TELEMETRY_INSTRUMENTATIONS": "off: per-call httpx/storage spans would flood the app's own telemetry",
    "MOVER_DELTA_MAINTENANCE_SCHEDULE": "Delta compaction/vacuum is opt-in (docs/sinks.md): extraAppSettings",
    "MOVER_VERIFY_SCHEDULE": "the daily verify is opt-in; set it through extraAppSettings (docs/operations.md)",
}

# MOVER_* literals in the code that name no app setting.
NOT_SETTINGS = {
}

HOW_TO_ADD = (
    "set it in `var appSettings` in infra/resources.bicep (a parameter if users choose it), or add it to "
    "DEFAULTED in tests/infra/test_app_settings.py with the reason the default is right in Azure"
)


def engine_settings() -> set[str]:
    names = set()
    for path in bicep.python_sources():
        names.update(s for s in bicep.string_constants(path) if re.fullmatch(r"MOVER_[A-Z0-9_]+", s))
    return names


def connection_suffixes() -> set[str]:
    """``__accountName``, ``__clientId``…: the suffixes the connection resolver appends to a setting name."""
    suffixes = set()
    for path in bicep.python_sources():
        suffixes.update(re.findall(r"\}(__[A-Za-z]+)\b", path.read_text(encoding="utf-8")))
    return suffixes


def shipped_pipelines() -> dict[str, object]:
    default = bicep.param_default("pipelines")
    match = re.fullmatch(r"loadJsonContent\('([^']+)'\)", default)
    assert match, f"param pipelines should default to loadJsonContent('<file>'), got {default}"
    doc: dict[str, object] = json.loads((bicep.INFRA / match.group(1)).read_text(encoding="utf-8"))
    return doc


def pipeline_connections() -> set[str]:
    """Connection settings the shipped pipelines name (sources and sinks); the default is AzureWebJobsStorage."""
    names = {"AzureWebJobsStorage"}
    for item in shipped_pipelines()["pipelines"]:  # type: ignore[attr-defined]
        for part in [item.get("source", {}), *(item.get("sinks") or [item.get("sink", {})])]:
            names.add(part.get("connection_setting", "AzureWebJobsStorage"))
    return names


def test_the_code_still_reads_the_settings_this_test_knows() -> None:
    found = engine_settings()
    assert "MOVER_PIPELINES" in found, "the scan of shared/ found no MOVER_PIPELINES: the scan is broken"
    assert {"__accountName", "__clientId"} <= connection_suffixes()
    stale = (set(DEFAULTED) | set(NOT_SETTINGS)) - found
    assert not stale, f"listed here but no longer in the code, remove them: {sorted(stale)}"


def test_every_engine_setting_is_set_or_deliberately_defaulted() -> None:
    template = set(bicep.app_settings())
    missing = engine_settings() - template - set(DEFAULTED) - set(NOT_SETTINGS)
    assert not missing, f"the engine reads {sorted(missing)} but the template does not set it: {HOW_TO_ADD}"
    both = template & set(DEFAULTED)
    assert not both, f"{sorted(both)} are set by the template and listed as defaulted; drop them from DEFAULTED"


def test_the_template_sets_nothing_that_nothing_reads() -> None:
    engine = engine_settings()
    suffixes = connection_suffixes()
    connections = pipeline_connections()
    unread = []
    for name in bicep.app_settings():
        base, _, suffix = name.partition("__")
        if name in engine or name in HOST_SETTINGS:
            continue
        if suffix and base in connections and f"__{suffix}" in suffixes:
            continue
        unread.append(name)
    assert not unread, f"the template sets {unread}, which neither the engine nor the host reads"
    assert set(HOST_SETTINGS) <= set(bicep.app_settings()), "a host setting listed here is no longer set"


def test_no_setting_carries_an_account_key() -> None:
    text = bicep.strip_comments(bicep.RESOURCES.read_text(encoding="utf-8"))
    for needle in ("listKeys(", "AccountKey=", "DefaultEndpointsProtocol", "SharedAccessSignature"):
        assert needle not in text
    for path in bicep.bicep_files():
        body = bicep.strip_comments(path.read_text(encoding="utf-8"))
        for account in re.findall(r"'Microsoft\.Storage/storageAccounts@[^']+' = \{(.*?)\n\}", body, re.DOTALL):
            assert "allowSharedKeyAccess: false" in account, f"{path.name}: a storage account allows shared keys"
            assert "minimumTlsVersion: 'TLS1_2'" in account
            assert "allowBlobPublicAccess: false" in account
            assert "supportsHttpsTrafficOnly: true" in account


def test_the_shipped_pipelines_parse_with_the_template_settings() -> None:
    """What `azd up` deploys must start: the engine parses it into identity-based storage."""
    env = {name: f"value-of-{name.lower().replace('_', '-')}" for name in bicep.app_settings()}
    env["MOVER_PIPELINES"] = json.dumps(shipped_pipelines())
    env["MOVER_SCHEDULE"] = "0 */5 * * * *"
    env["MOVER_LEDGER_TABLE"] = "moverledger"
    env["MOVER_QUARANTINE_CONTAINER"] = "mover-quarantine"
    env["MOVER_DISPATCH"] = "queue"
    env["MOVER_QUEUE_NAME"] = "mover-windows"
    settings = load_settings(env)
    assert settings.state.conn_string is None
    assert settings.state.blob_uri and settings.state.table_uri and settings.state.client_id
    assert settings.state.queue_uri and settings.dispatch == "queue"  # the queue worker finds its queue
    for pipeline in settings.pipelines:
        for sink in pipeline.sinks:
            assert sink.storage.conn_string is None and sink.storage.client_id, sink


@pytest.mark.parametrize(
    ("setting", "bicep_var"),
    [
        ("MOVER_LEDGER_TABLE", "ledgerTable"),
        ("MOVER_QUARANTINE_CONTAINER", "quarantineContainer"),
        ("MOVER_QUEUE_NAME", "workQueue"),
    ],
)
def test_state_names_in_settings_are_the_resources_the_template_creates(setting: str, bicep_var: str) -> None:
    text = bicep.RESOURCES.read_text(encoding="utf-8")
    assert re.search(rf"^\s+\{{ name: '{setting}', value: {bicep_var} \}}$", text, re.MULTILINE), (
        f"{setting} should be set from {bicep_var}"
    )
    assert re.search(rf"^\s+name: {bicep_var}$", text, re.MULTILINE), f"no resource is named by {bicep_var}"


def test_every_sink_container_of_the_shipped_pipelines_is_created() -> None:
    created = set(re.findall(r"'([a-z0-9-]+)'", bicep.param_default("sinkContainers")))
    used = set()
    for item in shipped_pipelines()["pipelines"]:  # type: ignore[attr-defined]
        for sink in item.get("sinks") or [item["sink"]]:
            if sink.get("kind", "blob") == "blob" and sink.get("connection_setting") == "SinkStorage":
                used.add(sink["container"])
    assert used, "the shipped pipelines write nothing to the sink account"
    assert used <= created, f"containers {sorted(used - created)} are not in sinkContainers"
