"""Credentials the engine sends never reach a log line, the ledger or a page.

Upstream services (or proxies in front of them) sometimes repeat a request's headers
in their error text. Every secret the engine holds or obtains is registered here (API
keys and fixed tokens from settings, bearer tokens from azure-identity, account keys
and SAS signatures of connection strings), and ``redact`` replaces each, plain or
URL-encoded, with ``[redacted]`` wherever error text is stored, logged or shown.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

__all__ = ["REDACTED", "install_log_redaction", "redact", "register", "register_connection_string"]

REDACTED = "[redacted]"
_MIN_LENGTH = 8  # shorter "secrets" would mangle ordinary words; no real key is this short
_lock = threading.Lock()
_forms: tuple[str, ...] = ()  # every registered secret in every spelling, longest first


def register(secret: str | None) -> None:
    """Remember a credential (and its URL-encoded spellings) so ``redact`` hides it."""
    global _forms
    if not secret or len(secret) < _MIN_LENGTH:
        return
    new = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    with _lock:
        if new <= set(_forms):
            return
        _forms = tuple(sorted(set(_forms) | new, key=len, reverse=True))


def register_connection_string(conn: str | None) -> None:
    """The account key, SAS and SAS signature of a storage connection string."""
    for part in (conn or "").split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() in ("accountkey", "sharedaccesssignature"):
            register(value)
            for name, item in parse_qsl(value.lstrip("?")):
                if name == "sig":
                    register(item)


def redact(text: str) -> str:
    """``text`` with every registered credential replaced by ``[redacted]``."""
    forms = _forms
    if not forms or not text:
        return text
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process as it is created (message and traceback).

    A record factory rather than a handler filter: it sees records of every logger,
    whichever handlers the host installs later.
    """
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _forms:
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a broken format string: keep what there is
        message = str(record.msg)
    record.msg, record.args = redact(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
