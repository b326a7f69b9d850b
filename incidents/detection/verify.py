"""Sender credentials, checked on the raw body before it is parsed.

* Alertmanager: ``Authorization: Bearer <secret>`` (``http_config.authorization``), when the
  integration has a secret. A bearer token signs nothing: a captured request can be replayed,
  so only TLS keeps it from being captured.
* Grafana: ``X-Grafana-Alerting-Signature``, the lowercase hex HMAC-SHA256 with the secret,
  when the integration has one. With a timestamp header
  (``X-Grafana-Alerting-Signature-Timestamp``, Unix seconds) Grafana signs
  ``<timestamp>:<body>``; without one, the body alone, which the integration accepts only when
  it does not require a signed timestamp.
* Generic: ``X-Vigil-Signature: sha256=<hex>``, the HMAC-SHA256 with the secret (always
  required) of ``<timestamp>.<body>``, the timestamp sent in ``X-Vigil-Timestamp`` (Unix
  seconds); of the body alone only when the integration does not require a signed timestamp.

The scheme each integration uses is its own (``Integration.auth``, or the kind's default):
besides Alertmanager's bearer token, any kind may be set to what its sender can present
(``ALLOWED_AUTH``): a bearer token, a secret static header (``<auth_header>: <secret>``),
HTTP Basic (user ``vigil``, the secret as password), Vigil's HMAC signature above (Grafana's
own under the HMAC scheme), or the URL key alone. None of the static credentials signs
anything: a captured request can be replayed, so only TLS keeps them from being captured.

A signed timestamp must be whole Unix seconds (ASCII digits: no sign, fraction, exponent,
``nan`` or ``inf``) within ``VIGIL_HOOK_SIGNATURE_MAX_AGE_SECONDS`` (5 minutes) of Vigil's
clock, either way. The verified signature is returned so that the caller accepts each signed
timestamp once (``replay.signature_claim``). Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from django.conf import settings

GRAFANA_SIGNATURE = "HTTP_X_GRAFANA_ALERTING_SIGNATURE"
GRAFANA_TIMESTAMP = "HTTP_X_GRAFANA_ALERTING_SIGNATURE_TIMESTAMP"
VIGIL_SIGNATURE = "HTTP_X_VIGIL_SIGNATURE"
VIGIL_TIMESTAMP = "HTTP_X_VIGIL_TIMESTAMP"
DEFAULT_MAX_AGE = 300.0
# Whole seconds in ASCII digits; 12 digits reach the year 33658.
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


class VerificationFailed(Exception):
    """Missing or wrong credentials; the message says which, never what was expected."""


@dataclass(frozen=True)
class Signed:
    """A verified signature: its hex HMAC, and the Unix time it signed (``None`` when it
    covered the body alone, so nothing tells a replay from a repeat)."""

    signature: str
    timestamp: int | None


def signature_max_age() -> float:
    """How far, in seconds, a signed timestamp may be off Vigil's clock (the replay window)."""
    return float(getattr(settings, "VIGIL_HOOK_SIGNATURE_MAX_AGE_SECONDS", DEFAULT_MAX_AGE))


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _timestamp(value: str, header: str, now: float | None) -> int:
    if not _UNIX_SECONDS.fullmatch(value):
        raise VerificationFailed(f"Invalid {header}: give the Unix time in whole seconds.")
    sent = int(value)
    now = time.time() if now is None else now
    max_age = signature_max_age()
    if abs(now - sent) > max_age:
        raise VerificationFailed(
            f"{header} is more than {max_age:g} seconds off Vigil's clock "
            "(a replayed request, or the sender's clock is wrong)."
        )
    return sent


def verify_bearer(meta: dict, secret: str) -> None:
    header = meta.get("HTTP_AUTHORIZATION", "")
    if not header:
        raise VerificationFailed("Missing Authorization header (Bearer token).")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not _equal(token.strip(), secret):
        raise VerificationFailed("Invalid bearer token.")


def meta_key(header: str) -> str:
    """The ``request.META`` key of an HTTP header name."""
    return "HTTP_" + header.upper().replace("-", "_")


def verify_header(meta: dict, secret: str, header: str) -> None:
    """A secret static header: ``<header>: <secret>``."""
    value = meta.get(meta_key(header), "")
    if not value:
        raise VerificationFailed(f"Missing {header} header.")
    if not _equal(value.strip(), secret):
        raise VerificationFailed(f"Invalid {header} header.")


def verify_basic(meta: dict, secret: str, user: str) -> None:
    """HTTP Basic authentication: ``user`` with the secret as password."""
    header = meta.get("HTTP_AUTHORIZATION", "")
    if not header:
        raise VerificationFailed("Missing Authorization header (Basic).")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise VerificationFailed("Invalid Authorization header: use Basic authentication.")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise VerificationFailed("Invalid Authorization header (Basic).") from None
    given_user, _, password = decoded.partition(":")
    # Both compared, always: the time taken tells nothing about which one was wrong.
    user_ok = _equal(given_user, user)
    password_ok = _equal(password, secret)
    if not (user_ok and password_ok):
        raise VerificationFailed("Invalid user name or password.")


def _signed_message(
    meta: dict,
    body: bytes,
    *,
    key: str,
    header: str,
    separator: bytes,
    require_timestamp: bool,
    now: float | None,
    how: str,
) -> tuple[int | None, bytes]:
    """The signed timestamp (``None`` without one) and the bytes its signature covers:
    ``<timestamp><separator><body>``, or the body alone when the integration allows it."""
    raw = meta.get(key, "").strip()
    if raw:
        return _timestamp(raw, header, now), raw.encode() + separator + body
    if require_timestamp:
        raise VerificationFailed(
            f"Missing {header} header: this integration requires a signed timestamp ({how})."
        )
    return None, body


def verify_grafana(
    meta: dict, secret: str, body: bytes, *, require_timestamp: bool, now: float | None = None
) -> Signed:
    signature = meta.get(GRAFANA_SIGNATURE, "").strip().lower()
    if not signature:
        raise VerificationFailed("Missing X-Grafana-Alerting-Signature header.")
    sent, message = _signed_message(
        meta,
        body,
        key=GRAFANA_TIMESTAMP,
        header="X-Grafana-Alerting-Signature-Timestamp",
        separator=b":",
        require_timestamp=require_timestamp,
        now=now,
        how="set it as the Timestamp Header of Grafana's HMAC signature",
    )
    expected = hmac_hex(secret, message)
    if not _equal(signature, expected):
        raise VerificationFailed("Invalid X-Grafana-Alerting-Signature.")
    return Signed(signature=expected, timestamp=sent)


def verify_vigil_signature(
    meta: dict, secret: str, body: bytes, *, require_timestamp: bool, now: float | None = None
) -> Signed:
    header = meta.get(VIGIL_SIGNATURE, "").strip()
    if not header:
        raise VerificationFailed("Missing X-Vigil-Signature header (sha256=<hex>).")
    sent, message = _signed_message(
        meta,
        body,
        key=VIGIL_TIMESTAMP,
        header="X-Vigil-Timestamp",
        separator=b".",
        require_timestamp=require_timestamp,
        now=now,
        how='X-Vigil-Signature over "<timestamp>.<body>"',
    )
    scheme, _, signature = header.partition("=")
    expected = hmac_hex(secret, message)
    if scheme.lower() != "sha256" or not _equal(signature.lower(), expected):
        raise VerificationFailed("Invalid X-Vigil-Signature.")
    return Signed(signature=expected, timestamp=sent)
