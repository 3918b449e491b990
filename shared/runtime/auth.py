"""Credentials: Entra ID first (managed identity in Azure), API key / fixed token for local use."""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from shared.errors import FatalError
from shared.redact import register
from shared.settings import AuthConfig

__all__ = ["HeaderProvider", "credential_for"]


@lru_cache(maxsize=16)
def credential_for(client_id: str | None = None, *, managed_only: bool = False) -> TokenCredential:
    """``DefaultAzureCredential`` (or ``ManagedIdentityCredential``), shared per identity."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if managed_only:
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    kwargs: dict[str, Any] = {}
    if client_id:
        kwargs["managed_identity_client_id"] = client_id
    return DefaultAzureCredential(**kwargs)


class HeaderProvider:
    """Auth headers for the query API; caches the bearer token until shortly before expiry."""

    def __init__(self, config: AuthConfig, credential: TokenCredential | None = None) -> None:
        self._config = config
        register(config.secret)
        self._credential = credential
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"HeaderProvider(kind={self._config.kind!r})"

    def headers(self) -> dict[str, str]:
        """Raises ``FatalError`` when no token can be had (no identity, no role)."""
        cfg = self._config
        if cfg.kind == "api_key":
            return {"x-api-key": cfg.secret or ""}
        if cfg.kind == "token":
            return {"Authorization": f"Bearer {cfg.secret}"}
        with self._lock:
            if self._token is None or time.time() > self._expires - 300:
                credential = self._credential or credential_for(
                    cfg.client_id, managed_only=cfg.kind == "managed_identity"
                )
                try:
                    token = credential.get_token(cfg.scope)
                except ClientAuthenticationError as exc:
                    raise FatalError(f"could not get a token for {cfg.scope}: {exc.message}") from exc
                self._token, self._expires = token.token, float(token.expires_on)
                register(token.token)  # upstream errors may echo it: keep it out of logs and the ledger
            return {"Authorization": f"Bearer {self._token}"}
