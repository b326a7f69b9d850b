"""Amazon SNS messages, verified before anything is made of them (CloudWatch alarms reach
Vigil through an SNS topic with an HTTPS subscription to ``/hooks/cloudwatch/<key>/``).

As Amazon documents it ("Verifying the signatures of Amazon SNS messages"):

* ``Signature`` is the base64 RSA PKCS#1 v1.5 signature, with SHA-1 (``SignatureVersion``
  "1", the topic's default) or SHA-256 ("2"), of the string to sign: ``name\\nvalue\\n`` for
  each signed field, in this order, ``Subject`` only when the message has one:

  - Notification: Message, MessageId, Subject, Timestamp, TopicArn, Type;
  - SubscriptionConfirmation and UnsubscribeConfirmation: Message, MessageId, SubscribeURL,
    Timestamp, Token, TopicArn, Type.

* The public key is the one of the X.509 certificate at ``SigningCertURL``.

What protects what, in the order it is checked (a message failing one check goes no further):

1. The shape: the three message types, every signed field a string, a readable Timestamp
   (:class:`SnsInvalid`, a 400).
2. ``SignatureVersion`` is "1" or "2"; ``SigningCertURL`` is ``https://``, has no user
   part, ends in ``.pem`` and its host matches ``VIGIL_SNS_CERT_HOST_PATTERN`` (whole, default
   ``^sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$``): a message naming any other certificate is
   refused without fetching it, so a forged message cannot bring its own key, nor make Vigil
   request a URL of its choosing (``VerificationFailed``, a 401).
3. ``Timestamp`` at most ``VIGIL_SNS_MAX_AGE_SECONDS`` (1 hour: SNS retries an HTTP/S delivery
   for at most 3,600 seconds, and a retry keeps the original Timestamp) old, and at most 5
   minutes ahead of Vigil's clock (401). A captured message can be replayed inside that
   hour; the caller accepts each ``MessageId`` once (``views_sns``).
4. The certificate, fetched over HTTPS with the TLS certificate of the allowed host verified
   (the system's CA bundle, or ``REQUESTS_CA_BUNDLE``): no redirects, a timeout, at most
   ``CERT_MAX_BYTES``, kept in Django's cache for ``CERT_CACHE_SECONDS`` by URL (Amazon
   publishes a new URL for a new certificate). It must be a PEM X.509 certificate inside its
   validity dates with an RSA key (401). Its trust comes from where it was fetched (an
   allowed host, over verified TLS), as in Amazon's SDK validators; its own chain is not
   checked again. A certificate host that cannot be reached, or answers 5xx, is
   :class:`SnsUnavailable` (a 503, so that SNS retries: nothing is lost).
5. The signature, with the certificate's key (401).

The ``TopicArn`` is checked by the caller against the integration's topic (``views_sns``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .verify import VerificationFailed

logger = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
# The signed fields of each message type, in the order of the string to sign.
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: _CONFIRMATION_FIELDS,
    UNSUBSCRIBE_CONFIRMATION: _CONFIRMATION_FIELDS,
}
_OPTIONAL_FIELDS = frozenset({"Subject"})
SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

DEFAULT_CERT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
DEFAULT_MAX_AGE = 3600.0
CLOCK_SKEW = timedelta(minutes=5)
# Amazon's signing certificates are about 2 KB.
CERT_MAX_BYTES = 64 * 1024
CERT_CACHE_SECONDS = 24 * 3600
# (connect, read) seconds: SNS waits 15 seconds for the whole answer by default.
FETCH_TIMEOUT = (3.05, 5.0)
CONFIRM_MAX_BYTES = 64 * 1024


class SnsInvalid(Exception):
    """The body is not a well-formed SNS message."""


class SnsUnavailable(Exception):
    """An SNS host could not be reached or answered a server error: try again later."""


@dataclass(frozen=True)
class SnsMessage:
    """A well-formed SNS message (not yet verified): its type, id, topic, signed time and the
    whole envelope as received."""

    type: str
    message_id: str
    topic_arn: str
    timestamp: datetime
    envelope: dict[str, Any]

    @property
    def subscribe_url(self) -> str:
        return self.envelope.get("SubscribeURL", "")


def max_age() -> float:
    return float(getattr(settings, "VIGIL_SNS_MAX_AGE_SECONDS", DEFAULT_MAX_AGE))


@lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ImproperlyConfigured(
            f"VIGIL_SNS_CERT_HOST_PATTERN {pattern!r} is not a regular expression: {exc}"
        ) from None


def host_pattern() -> re.Pattern[str]:
    return _compiled(getattr(settings, "VIGIL_SNS_CERT_HOST_PATTERN", DEFAULT_CERT_HOST_PATTERN))


def sns_url_allowed(url: Any) -> bool:
    """Whether ``url`` is an HTTPS URL on an allowed SNS host, with nothing that parsers read
    differently (a user part, backslashes, whitespace)."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        return False
    if any(c in url for c in "\\@") or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    if parts.scheme != "https" or not parts.hostname:
        return False
    return host_pattern().fullmatch(parts.hostname) is not None


def _timestamp(value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise SnsInvalid(f"Timestamp {value[:40]!r} is not an ISO 8601 time.") from None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def sns_message_read(payload: Any) -> SnsMessage:
    """The SNS message in a decoded JSON body; raises :class:`SnsInvalid` when it is not one."""
    if not isinstance(payload, dict):
        raise SnsInvalid("The body must be an SNS message (a JSON object).")
    kind = payload.get("Type")
    if kind not in SIGNED_FIELDS:
        raise SnsInvalid(f"Type must be one of {', '.join(SIGNED_FIELDS)}.")
    missing, not_text = [], []
    for name in (*SIGNED_FIELDS[kind], "SignatureVersion", "Signature", "SigningCertURL"):
        value = payload.get(name)
        if value is None:
            if name not in _OPTIONAL_FIELDS:
                missing.append(name)
        elif not isinstance(value, str):
            not_text.append(name)
    if missing:
        raise SnsInvalid(f"Missing {', '.join(missing)}.")
    if not_text:
        raise SnsInvalid(f"{', '.join(not_text)} must be strings.")
    for name in ("MessageId", "TopicArn"):
        if not payload[name].strip() or len(payload[name]) > 1024:
            raise SnsInvalid(f"{name} must be a non-blank string (at most 1024 characters).")
    return SnsMessage(
        type=kind,
        message_id=payload["MessageId"],
        topic_arn=payload["TopicArn"],
        timestamp=_timestamp(payload["Timestamp"]),
        envelope=payload,
    )


def string_to_sign(envelope: dict[str, Any]) -> bytes:
    """The bytes SNS signed: ``name\\nvalue\\n`` per signed field of the message's type."""
    out = []
    for name in SIGNED_FIELDS[envelope["Type"]]:
        if name in _OPTIONAL_FIELDS and envelope.get(name) is None:
            continue
        out.append(f"{name}\n{envelope[name]}\n")
    return "".join(out).encode("utf-8", "surrogatepass")


def _cert_cache_key(url: str) -> str:
    return "vigil:sns-cert:" + hashlib.sha256(url.encode()).hexdigest()


def _get(url: str, *, limit: int, what: str) -> bytes:
    """GET ``url`` (no redirects, ``FETCH_TIMEOUT``), at most ``limit`` bytes of its 200
    answer. An unreachable host or a 5xx is :class:`SnsUnavailable`; any other answer is
    ``VerificationFailed``."""
    try:
        with requests.get(
            url,
            timeout=FETCH_TIMEOUT,
            allow_redirects=False,
            stream=True,
            headers={"User-Agent": "Vigil"},
        ) as response:
            if response.status_code >= 500:
                raise SnsUnavailable(f"The {what} host answered {response.status_code}.")
            if response.status_code != 200:
                raise VerificationFailed(f"The {what} URL answered {response.status_code}.")
            chunks, size = [], 0
            for chunk in response.iter_content(chunk_size=8192):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
    except requests.RequestException as exc:
        raise SnsUnavailable(f"The {what} could not be fetched: {type(exc).__name__}.") from None
    if size > limit:
        raise VerificationFailed(f"The {what} is larger than {limit} bytes.")
    return b"".join(chunks)


def _certificate_load(pem: bytes, *, now: datetime) -> rsa.RSAPublicKey:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise VerificationFailed("SigningCertURL does not hold a PEM certificate.") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise VerificationFailed("The signing certificate is outside its validity dates.")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise VerificationFailed("The signing certificate has no RSA key.")
    return key


def signing_key(url: str, *, now: datetime) -> rsa.RSAPublicKey:
    """The RSA key of the certificate at ``url`` (an allowed URL), from the cache or fetched.
    A cache that is down costs a fetch, never a refusal."""
    key = _cert_cache_key(url)
    try:
        pem = cache.get(key)
    except Exception:
        logger.warning("The cache is unavailable; fetching the SNS certificate %s", url)
        pem = None
    if pem is not None:
        return _certificate_load(pem, now=now)
    pem = _get(url, limit=CERT_MAX_BYTES, what="signing certificate")
    public_key = _certificate_load(pem, now=now)
    try:
        cache.set(key, pem, timeout=CERT_CACHE_SECONDS)
    except Exception:
        logger.warning("The cache is unavailable; the SNS certificate %s is not kept", url)
    logger.info("Fetched the SNS signing certificate %s", url)
    return public_key


def sns_verify(message: SnsMessage, *, now: datetime | None = None) -> None:
    """Check ``message`` as the module's docstring says; returns None when it is genuine.
    Raises ``VerificationFailed`` (forged, stale or unverifiable) or :class:`SnsUnavailable`
    (the certificate could not be fetched: try again later)."""
    now = now or timezone.now()
    envelope = message.envelope
    version = envelope["SignatureVersion"]
    if version not in SIGNATURE_HASHES:
        raise VerificationFailed(f"Unknown SignatureVersion {version[:10]!r}: Vigil knows 1 and 2.")
    cert_url = envelope["SigningCertURL"]
    if not sns_url_allowed(cert_url) or not urlsplit(cert_url).path.endswith(".pem"):
        raise VerificationFailed(
            "SigningCertURL is not an https:// certificate URL on an Amazon SNS host "
            "(VIGIL_SNS_CERT_HOST_PATTERN); the certificate was not fetched."
        )
    age = (now - message.timestamp).total_seconds()
    if age > max_age():
        raise VerificationFailed(
            f"The message's Timestamp is more than {max_age():g} seconds old (a replay, or "
            "a delivery SNS no longer retries)."
        )
    if message.timestamp > now + CLOCK_SKEW:
        raise VerificationFailed("The message's Timestamp is in the future.")
    try:
        signature = base64.b64decode(envelope["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed("Signature is not base64.") from None
    public_key = signing_key(cert_url, now=now)
    try:
        public_key.verify(
            signature,
            string_to_sign(envelope),
            padding.PKCS1v15(),
            SIGNATURE_HASHES[version](),
        )
    except InvalidSignature:
        raise VerificationFailed("Invalid SNS message signature.") from None


def sns_subscription_confirm(message: SnsMessage) -> None:
    """Confirm a verified SubscriptionConfirmation by visiting its ``SubscribeURL``, which
    must be an ``Action=ConfirmSubscription`` URL on an allowed SNS host for the message's
    topic (else :class:`SnsInvalid`, and nothing is requested). Raises
    :class:`SnsUnavailable` or ``VerificationFailed`` when SNS does not answer 200."""
    url = message.subscribe_url
    if not sns_url_allowed(url):
        raise SnsInvalid("SubscribeURL is not an https:// URL on an Amazon SNS host.")
    query = parse_qs(urlsplit(url).query)
    if query.get("Action") != ["ConfirmSubscription"]:
        raise SnsInvalid("SubscribeURL is not an Action=ConfirmSubscription URL.")
    if query.get("TopicArn", [message.topic_arn]) != [message.topic_arn]:
        raise SnsInvalid("SubscribeURL confirms another topic than the message's TopicArn.")
    _get(url, limit=CONFIRM_MAX_BYTES, what="subscription confirmation")
