"""Registered credentials vanish from any text, in every spelling; short strings are never treated as secrets."""

from __future__ import annotations

import logging

from shared import redact


def test_plain_and_url_encoded_forms_are_replaced():
    secret = "eyJ0eXAi.OiJKV1Q/abc+def="
    redact.register(secret)
    text = f"Authorization: Bearer {secret} or ?token=eyJ0eXAi.OiJKV1Q%2Fabc%2Bdef%3D or eyJ0eXAi.OiJKV1Q/abc%2Bdef%3D"
    out = redact.redact(text)
    assert "abc" not in out and out.count("[redacted]") == 3


def test_connection_string_key_and_sas_signature_are_registered():
    redact.register_connection_string(
        "AccountName=a;AccountKey=c2VjcmV0LWFjY291bnQta2V5;SharedAccessSignature=sv=2024-01-01&sig=c2lnbmF0dXJlLXZhbHVl"
    )
    text = "key c2VjcmV0LWFjY291bnQta2V5 sig=c2lnbmF0dXJlLXZhbHVl account a"
    assert redact.redact(text) == "key [redacted] sig=[redacted] account a"


def test_short_values_are_not_secrets():
    redact.register("abc")
    redact.register("")
    redact.register(None)
    assert redact.redact("abc is fine") == "abc is fine"


def test_log_records_are_redacted_with_their_tracebacks(caplog):
    redact.install_log_redaction()
    redact.register("log-secret-123456")
    logger = logging.getLogger("tests.redact")
    with caplog.at_level(logging.INFO, logger="tests.redact"):
        logger.info("token %s sent", "log-secret-123456")
        try:
            raise RuntimeError("upstream said log-secret-123456")
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text
    assert "token [redacted] sent" in text and "upstream said [redacted]" in text
    assert "log-secret-123456" not in text
