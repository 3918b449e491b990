"""The Entra / managed-identity path end to end: azure-identity → local token endpoint → emulator.

``devtools.identity`` speaks the App Service managed-identity protocol (``IDENTITY_ENDPOINT`` /
``IDENTITY_HEADER``, as on Functions) and signs tokens the query emulator checks like the
service: audience, expiry, signature. Pipelines with ``managed_identity`` (system- and
user-assigned) and ``entra`` (DefaultAzureCredential) move real windows into Azurite; tokens
are cached across a backfill and refreshed when they near expiry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.identity import API_VERSION, IdentityEndpoint, Principal
from shared.model import Window, format_ts
from shared.runtime.auth import credential_for
from tests.conftest import APP_ID, T0, H, query_pipeline

KEY = "test-identity-signing-key-0123456789"
UAI = Principal("aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b", "uai-mover")
SYSTEM = Principal("cccccccc-0000-4000-8000-00000000000c", "dddddddd-0000-4000-8000-00000000000d", "system")
START = T0 + 40 * H  # 8 hourly windows are due at make_engine's clock (T0 + 48 h + 10 min)
APPS = "https://api.applicationinsights.io"
# Other credential sources DefaultAzureCredential would try before (or after) managed identity.
FOREIGN_ENV = (
    "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "MSI_SECRET",
    "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
)  # fmt: skip


@pytest.fixture()
def identity(emulator, monkeypatch) -> Iterator[IdentityEndpoint]:
    """A token endpoint in the environment like a Functions host sets it; the emulator trusts its key."""
    endpoint = IdentityEndpoint(KEY, system=SYSTEM, user_assigned={UAI.client_id: UAI}).start()
    for name in FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in endpoint.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "prod")  # DefaultAzureCredential: no developer tools
    credential_for.cache_clear()  # credentials read the environment when built
    before, emulator.config.token_key = emulator.config.token_key, KEY
    yield endpoint
    emulator.config.token_key = before
    monkeypatch.undo()
    credential_for.cache_clear()
    endpoint.stop()


def _pipeline(emulator, container: str, auth: dict[str, Any], name: str = "req", table: str = "requests"):
    return query_pipeline(name, table, emulator, container, source={"auth": auth}, window={"start": format_ts(START)})


def _expected(emulator, table: str, count: int = 8) -> list[int]:
    return [emulator.expected_count(table, START + i * H, START + (i + 1) * H) for i in range(count)]


@pytest.mark.parametrize(
    ("auth", "principal"),
    [
        ({"kind": "managed_identity"}, SYSTEM),
        ({"kind": "managed_identity", "client_id": UAI.client_id}, UAI),
        ({"kind": "entra"}, SYSTEM),
        ({"kind": "entra", "client_id": UAI.client_id}, UAI),
    ],
    ids=["system-assigned", "user-assigned", "entra-default-credential", "entra-user-assigned"],
)
def test_backfill_moves_through_the_managed_identity_with_one_token(
    identity, make_engine, emulator, unique, auth, principal
):
    failures = emulator.stats.auth_failures
    engine = make_engine([_pipeline(emulator, f"out-{unique}", auth)])
    report = engine.tick()
    assert [(r.outcome, r.rows) for r in report.results] == [("done", n) for n in _expected(emulator, "requests")]
    assert dict(identity.issued) == {principal.client_id: 1}  # cached for the whole backfill
    assert emulator.stats.auth_failures == failures


def test_tokens_near_expiry_are_refreshed_during_a_backfill(identity, make_engine, emulator, unique):
    identity.lifetime = 300  # inside the 5-minute refresh margin: every request must get a new token
    requests = emulator.stats.requests
    failures = emulator.stats.auth_failures
    engine = make_engine([_pipeline(emulator, f"out-{unique}", {"kind": "managed_identity"})])
    report = engine.tick()
    assert [(r.outcome, r.rows) for r in report.results] == [("done", n) for n in _expected(emulator, "requests")]
    served = emulator.stats.requests - requests
    assert served >= 16 and identity.total_issued == served  # a fresh token for every query, none refused
    assert emulator.stats.auth_failures == failures

    identity.lifetime = 3600  # and a long-lived one is kept again
    more = engine.replayer.replay(engine.settings.pipeline("req"), START, START + 2 * H, mode="inline")
    assert [r.outcome for r in more.results] == ["done", "done"]
    assert identity.total_issued == served + 1


def test_expired_token_is_refused_with_the_services_error(identity, make_engine, emulator, unique):
    identity.lifetime = -60  # the endpoint hands out a token that is already expired
    failures = emulator.stats.auth_failures
    engine = make_engine([_pipeline(emulator, f"out-{unique}", {"kind": "managed_identity"})])
    result = engine.worker.run_window(engine.settings.pipeline("req"), Window(START, START + H))
    assert result.outcome == "failed"
    assert "401" in result.error and "ExpiredAuthenticationToken" in result.error
    assert emulator.stats.auth_failures == failures + 1


def test_token_for_another_audience_is_refused(identity, make_engine, emulator, unique):
    auth = {"kind": "managed_identity", "scope": "https://management.azure.com/.default"}
    engine = make_engine([_pipeline(emulator, f"out-{unique}", auth)])
    result = engine.worker.run_window(engine.settings.pipeline("req"), Window(START, START + H))
    assert result.outcome == "failed" and "InvalidAuthenticationTokenAudience" in result.error
    assert dict(identity.issued) == {SYSTEM.client_id: 1}  # the endpoint issued it; the API refused it


def test_unknown_user_assigned_identity_fails_the_window_with_the_reason(identity, make_engine, emulator, unique):
    auth = {"kind": "managed_identity", "client_id": "eeeeeeee-0000-4000-8000-00000000000e"}
    engine = make_engine([_pipeline(emulator, f"out-{unique}", auth)])
    result = engine.worker.run_window(engine.settings.pipeline("req"), Window(START, START + H))
    assert result.outcome == "failed" and "could not get a token" in result.error
    assert "Unable to load the proper Managed Identity" in result.error
    assert identity.rejected[400] == 1 and identity.total_issued == 0


# -- the two protocols, over HTTP -----------------------------------------------------------------------------
def _token_request(identity: IdentityEndpoint, **params: str) -> httpx.Response:
    headers = {"X-IDENTITY-HEADER": params.pop("header")} if "header" in params else {}
    return httpx.get(identity.url, params={"api-version": API_VERSION, "resource": APPS, **params}, headers=headers)


def test_identity_endpoint_speaks_the_app_service_protocol(identity):
    ok = _token_request(identity, header=identity.header, client_id=UAI.client_id)
    body = ok.json()
    assert ok.status_code == 200 and set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert (body["resource"], body["token_type"], body["client_id"]) == (APPS, "Bearer", UAI.client_id)
    assert isinstance(body["expires_on"], str) and int(body["expires_on"]) > 0
    refusals = [
        (_token_request(identity), 401),
        (_token_request(identity, header="wrong"), 401),
        (_token_request(identity, header=identity.header, client_id="nobody"), 400),
        (_token_request(identity, header=identity.header, **{"api-version": "2017-09-01"}), 400),
    ]
    for response, status in refusals:
        assert response.status_code == status and response.json()["statusCode"] == status
    assert refusals[2][0].json()["message"] == "Unable to load the proper Managed Identity."
    assert identity.total_issued == 1


def _query(emulator, token: str, kind: str = "apps", resource: str = APP_ID) -> httpx.Response:
    return httpx.post(
        f"{emulator.url}/v1/{kind}/{resource}/query",
        json={
            "query": f"{'requests' if kind == 'apps' else 'AppRequests'} | count",
            "timespan": f"{format_ts(START)}/{format_ts(START + H)}",
        },
        headers={"Authorization": f"Bearer {token}"},
    )


def test_emulator_checks_audience_expiry_and_signature_like_the_service(identity, emulator):
    good, _ = identity.token(APPS, SYSTEM)
    assert _query(emulator, good).status_code == 200
    workspace, _ = identity.token("https://api.loganalytics.io", SYSTEM)
    assert _query(emulator, workspace, "workspaces", "test-ws").status_code == 200
    assert _query(emulator, "test-token").status_code == 200  # the dev token still works

    cases = {
        "InvalidAuthenticationTokenAudience": identity.token("https://management.azure.com", SYSTEM)[0],
        "ExpiredAuthenticationToken": identity.token(APPS, SYSTEM, lifetime=-1)[0],
        "InvalidAuthenticationToken": IdentityEndpoint("another-key-0123456789-abcdefghij").token(APPS, SYSTEM)[0],
    }
    for inner, token in cases.items():
        response = _query(emulator, token)
        error = response.json()["error"]
        assert response.status_code == 401, inner
        assert (error["code"], error["message"]) == (
            "InvalidTokenError",
            "The provided authentication is not valid for this resource",
        )
        assert error["innererror"]["code"] == inner
        assert f'error_description="{inner}"' in response.headers["WWW-Authenticate"]
    assert _query(emulator, workspace).status_code == 401  # a Log Analytics token is not for the apps API


def test_without_the_key_the_emulator_refuses_identity_tokens(identity, emulator):
    emulator.config.token_key = None
    token, _ = identity.token(APPS, SYSTEM)
    assert _query(emulator, token).status_code == 403
