"""Storage connection strings checked at load, with the reason (pure).

The SDKs parse a connection string only when a client is built, and then say little
("Connection string is either blank or malformed") or fail later with a DNS error for
a typo in a key. This reads it the way they do (``;``-separated ``key=value``, keys
case-insensitive, a value may hold ``=``) and names what is wrong, never echoing a
value: keys and signatures are secrets.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["connection_problems", "uri_problem"]

_SERVICES = ("blob", "table", "queue", "file")
_KNOWN = {
    "usedevelopmentstorage": "UseDevelopmentStorage",
    "developmentstorageproxyuri": "DevelopmentStorageProxyUri",
    "defaultendpointsprotocol": "DefaultEndpointsProtocol",
    "accountname": "AccountName",
    "accountkey": "AccountKey",
    "sharedaccesssignature": "SharedAccessSignature",
    "endpointsuffix": "EndpointSuffix",
    **{f"{s}endpoint": f"{s.capitalize()}Endpoint" for s in _SERVICES},
    **{f"{s}secondaryendpoint": f"{s.capitalize()}SecondaryEndpoint" for s in _SERVICES},
}
_URL = re.compile(r"^https?://[A-Za-z0-9.\-_~%\[\]:]+(/\S*)?$")
_SUFFIX = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def uri_problem(value: str) -> str | None:
    """Why ``value`` is not an http(s) service URL, or ``None``."""
    if not _URL.match(value.strip()):
        return f"is not an http(s) URL like https://<account>.blob.core.windows.net; got {value[:60]!r}"
    return None


def connection_problems(conn: str, services: tuple[str, ...] = ("blob", "table")) -> list[str]:
    """What keeps ``conn`` from reaching ``services`` (empty when it is usable)."""
    parts = conn.strip().rstrip(";").split(";")
    problems: list[str] = []
    values: dict[str, str] = {}
    for i, part in enumerate(parts, start=1):
        key, sep, value = part.partition("=")
        if not sep or not key:
            what = "is empty" if not part.strip() else "is not key=value"
            problems.append(f"connection string part {i} {what}")
            continue
        name = _KNOWN.get(key.lower())
        if name is None or key != key.strip():
            close = _KNOWN.get(key.strip().lower())
            hint = f" (remove the spaces around {close!r})" if close else f"; known keys: {', '.join(_KNOWN.values())}"
            problems.append(f"connection string has unknown key {key[:40]!r}{hint}")
            continue
        if name in values:
            problems.append(f"connection string has {name} twice")
        values[name] = value
    if problems:
        return problems
    if "UseDevelopmentStorage" in values:
        if values["UseDevelopmentStorage"] != "true":
            problems.append("UseDevelopmentStorage must be 'true' (lowercase) when given")
        return problems
    name = values.get("AccountName")
    if name is not None and not re.match(r"^[A-Za-z0-9-]{1,64}$", name):
        problems.append("AccountName must be the storage account name (letters and digits)")
    account_key = values.get("AccountKey")
    sas = values.get("SharedAccessSignature")
    if account_key is not None:
        try:
            base64.b64decode(account_key, validate=True)
            if not account_key:
                raise ValueError
        except (binascii.Error, ValueError):
            problems.append("AccountKey is not a base64 account key (copy it again from Access keys)")
        if name is None:
            problems.append("AccountKey needs AccountName")
    if account_key is None and not sas:
        problems.append("needs AccountName and AccountKey, or SharedAccessSignature (or UseDevelopmentStorage=true)")
    protocol = values.get("DefaultEndpointsProtocol")
    if protocol is not None and protocol not in ("http", "https"):
        problems.append(f"DefaultEndpointsProtocol must be http or https; got {protocol[:20]!r}")
    suffix = values.get("EndpointSuffix")
    if suffix is not None and not _SUFFIX.match(suffix):
        problems.append(f"EndpointSuffix must be a domain like core.windows.net; got {suffix[:60]!r}")
    for key_name, value in values.items():
        if key_name.endswith("Endpoint") or key_name == "DevelopmentStorageProxyUri":
            problem = uri_problem(value)
            if problem:
                problems.append(f"{key_name} {problem}")
    for service in services:
        endpoint = f"{service.capitalize()}Endpoint"
        if endpoint not in values and name is None:
            problems.append(f"needs AccountName or {endpoint} to reach the {service} service")
    return problems
