from __future__ import annotations

import re
import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.errors import FatalError
from shared.runtime.auth import HeaderProvider
from shared.settings import AuthConfig

SCOPE = "https://api.applicationinsights.io/.default"


class Credential:
    """A TokenCredential handing out numbered tokens that expire after ``ttl`` seconds."""

    def __init__(self, ttl: float = 3600, fail: bool = False) -> None:
        self.ttl, self.fail, self.calls, self.scopes = ttl, fail, 0, []

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        if self.fail:
            raise ClientAuthenticationError("no managed identity endpoint")
        self.calls += 1
        self.scopes.append(scopes)
        return AccessToken(f"token-{self.calls}", int(time.time() + self.ttl))


def test_entra_token_is_cached_until_near_expiry():
    cred = Credential(ttl=3600)
    provider = HeaderProvider(AuthConfig(kind="entra", scope=SCOPE), cred)
    assert provider.headers() == {"Authorization": "Bearer token-1"}
    assert provider.headers() == {"Authorization": "Bearer token-1"}
    assert cred.calls == 1 and cred.scopes == [(SCOPE,)]


def test_entra_token_refreshed_when_about_to_expire():
    cred = Credential(ttl=60)  # inside the 5-minute refresh margin
    provider = HeaderProvider(AuthConfig(kind="managed_identity", scope=SCOPE, client_id="cid"), cred)
    provider.headers()
    assert provider.headers() == {"Authorization": "Bearer token-2"}


def test_missing_identity_is_fatal_and_says_why():
    provider = HeaderProvider(AuthConfig(kind="entra", scope=SCOPE), Credential(fail=True))
    with pytest.raises(FatalError, match=re.escape(f"could not get a token for {SCOPE}")):
        provider.headers()


@pytest.mark.parametrize(
    ("kind", "header"),
    [("api_key", {"x-api-key": "s3cret"}), ("token", {"Authorization": "Bearer s3cret"})],
    ids=["api-key", "static-token"],
)
def test_static_secrets(kind, header):
    provider = HeaderProvider(AuthConfig(kind=kind, scope=SCOPE, secret="s3cret"))
    assert provider.headers() == header
    assert "s3cret" not in repr(provider)
    assert "s3cret" not in repr(AuthConfig(kind=kind, scope=SCOPE, secret="s3cret"))


def test_tokens_obtained_and_secrets_configured_are_registered_for_redaction():
    from shared.redact import redact

    class LongToken(Credential):
        def get_token(self, *scopes, **kwargs) -> AccessToken:
            return AccessToken("eyJhbGciOi.entra-token-for-redaction", int(time.time() + 3600))

    HeaderProvider(AuthConfig(kind="entra", scope=SCOPE), LongToken()).headers()
    HeaderProvider(AuthConfig(kind="api_key", scope=SCOPE, secret="configured-api-key-42"))
    text = "echo: Bearer eyJhbGciOi.entra-token-for-redaction x-api-key=configured-api-key-42"
    assert redact(text) == "echo: Bearer [redacted] x-api-key=[redacted]"
