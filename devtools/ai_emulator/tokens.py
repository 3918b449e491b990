"""Bearer JWTs as the service checks them: signature, expiry, audience.

Tokens come from ``devtools.identity`` (the local managed-identity endpoint), signed HS256
with the key both sides are given (``EmulatorConfig.token_key``). The service's answers:
401 ``InvalidTokenError`` with the inner code ARM uses — ``InvalidAuthenticationTokenAudience``
(``aud`` is not this API), ``ExpiredAuthenticationToken`` (``exp`` passed: no clock skew is
allowed here, so a client must refresh before expiry), ``InvalidAuthenticationToken``
(malformed or not signed with the key).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

import jwt

from .errors import invalid_token

__all__ = ["AUDIENCES", "check_token", "looks_like_jwt"]

# Audiences each route accepts (``resource`` as the identity endpoint got it; a trailing "/" is the same).
AUDIENCES = {
    "apps": ("https://api.applicationinsights.io",),
    "workspaces": ("https://api.loganalytics.io", "https://api.loganalytics.azure.com"),
}


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def check_token(token: str, key: str, audiences: Iterable[str], *, now: float | None = None) -> str:
    """The caller's object id, or ``ApiError`` (401) saying why the token is refused."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_aud": False, "require": ["exp", "aud", "oid"]},
        )
    except jwt.InvalidTokenError as exc:
        raise invalid_token("InvalidAuthenticationToken", f"The access token is invalid: {exc}.") from exc
    current = time.time() if now is None else now
    exp = int(claims["exp"])
    if exp <= current:
        at = datetime.fromtimestamp(exp, UTC).strftime("%m/%d/%Y %H:%M:%S")
        raise invalid_token(
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time '{at}' is earlier than current UTC time"
            f" '{datetime.fromtimestamp(current, UTC).strftime('%m/%d/%Y %H:%M:%S')}'.",
        )
    aud = str(claims["aud"]).rstrip("/")
    accepted = [a.rstrip("/") for a in audiences]
    if aud not in accepted:
        raise invalid_token(
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource '{claims['aud']}'. It should"
            f" exactly match with one of the allowed audiences {', '.join(repr(a) for a in accepted)}.",
        )
    return str(claims["oid"])
