"""Sender credentials, checked on the raw body before it is parsed.

* Alertmanager: ``Authorization: Bearer <secret>`` (``http_config.authorization``), when the
  integration has a secret.
* Grafana: ``X-Grafana-Alerting-Signature``, the lowercase hex HMAC-SHA256 of the body with
  the secret, when the integration has one. When Grafana is configured with a timestamp
  header (``X-Grafana-Alerting-Signature-Timestamp``, Unix seconds), it signs
  ``<timestamp>:<body>`` instead; the timestamp must be within 5 minutes of Vigil's clock.
* Generic: ``X-Vigil-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body with the
  secret. Always required.

Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings

GRAFANA_SIGNATURE = "HTTP_X_GRAFANA_ALERTING_SIGNATURE"
GRAFANA_TIMESTAMP = "HTTP_X_GRAFANA_ALERTING_SIGNATURE_TIMESTAMP"
VIGIL_SIGNATURE = "HTTP_X_VIGIL_SIGNATURE"
DEFAULT_MAX_SKEW = 300.0


class VerificationFailed(Exception):
    """Missing or wrong credentials; the message says which, never what was expected."""


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def verify_bearer(meta: dict, secret: str) -> None:
    header = meta.get("HTTP_AUTHORIZATION", "")
    if not header:
        raise VerificationFailed("Missing Authorization header (Bearer token).")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not _equal(token.strip(), secret):
        raise VerificationFailed("Invalid bearer token.")


def verify_grafana(meta: dict, secret: str, body: bytes, *, now: float | None = None) -> None:
    signature = meta.get(GRAFANA_SIGNATURE, "").strip().lower()
    if not signature:
        raise VerificationFailed("Missing X-Grafana-Alerting-Signature header.")
    timestamp = meta.get(GRAFANA_TIMESTAMP, "").strip()
    message = body
    if timestamp:
        try:
            sent = float(timestamp)
        except ValueError:
            raise VerificationFailed("Invalid signature timestamp.") from None
        now = time.time() if now is None else now
        max_skew = getattr(settings, "VIGIL_GRAFANA_SIGNATURE_MAX_AGE_SECONDS", DEFAULT_MAX_SKEW)
        if abs(now - sent) > max_skew:
            raise VerificationFailed(
                f"Signature timestamp is more than {max_skew:g} seconds off Vigil's clock."
            )
        message = timestamp.encode() + b":" + body
    if not _equal(signature, hmac_hex(secret, message)):
        raise VerificationFailed("Invalid X-Grafana-Alerting-Signature.")


def verify_vigil_signature(meta: dict, secret: str, body: bytes) -> None:
    header = meta.get(VIGIL_SIGNATURE, "").strip()
    if not header:
        raise VerificationFailed("Missing X-Vigil-Signature header (sha256=<hex>).")
    scheme, _, signature = header.partition("=")
    if scheme.lower() != "sha256" or not _equal(signature.lower(), hmac_hex(secret, body)):
        raise VerificationFailed("Invalid X-Vigil-Signature.")
