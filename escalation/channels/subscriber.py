"""Status-page subscribers' own webhooks (channel ``subscriber``): the JSON body composed by the
sender, POSTed as ``application/json`` to the URL the notification names, signed like the
outbound webhook (``X-Vigil-Signature: sha256=<hex>``, HMAC-SHA256 of the exact body bytes).

Unlike the other HTTP channels, the recipient *is* the URL: staff register it (admin or API),
and it is checked twice against server-side request forgery, when it is registered
(:func:`subscriber_webhook_url_problem`) and before every delivery, after resolving its host:
an address that is not public (private, loopback, link-local, shared, reserved, multicast) is
refused, a permanent failure. ``VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE`` lifts the check (and
allows plain ``http``) for development and tests. What is left: a host whose DNS answer changes
between the check and the connection (a rebinding attacker) can still be reached once; only
staff can register URLs.

Each URL has a signing key of its own, derived from ``VIGIL_SUBSCRIBER_WEBHOOK_KEY`` (default:
Django's ``SECRET_KEY``) and the URL (:func:`subscriber_webhook_secret`), so no secret is stored
on a row and staff can show it again; rotating that key changes every subscriber's secret.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.utils.crypto import salted_hmac

from .base import IDEMPOTENCY_HEADER, post, setting
from .errors import PermanentDeliveryError, TransientDeliveryError
from .webhook import SIGNATURE_HEADER, STANDARD_IDEMPOTENCY_HEADER, sign

if TYPE_CHECKING:
    from ..models import Notification

__all__ = [
    "SubscriberBackend",
    "subscriber_webhook_secret",
    "subscriber_webhook_url_problem",
]

SERVICE = "Subscriber webhook"
SALT = "vigil.subscriber-webhook"
# The outbox's recipient column holds 255 characters; a longer URL would be cut.
URL_MAX = 255


def subscriber_webhook_secret(url: str) -> str:
    """The key that signs the bodies sent to ``url`` (hex): an HMAC of the URL under
    ``VIGIL_SUBSCRIBER_WEBHOOK_KEY``, or under ``SECRET_KEY`` when that is empty."""
    key = setting("VIGIL_SUBSCRIBER_WEBHOOK_KEY", "") or None
    return salted_hmac(SALT, url, secret=key, algorithm="sha256").hexdigest()


def _allow_private() -> bool:
    return bool(setting("VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE", False))


class _Refused(Exception):
    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _check(url: str) -> None:
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise _Refused(f"A webhook URL of 1 to {URL_MAX} characters is required.")
    if any(ch.isspace() for ch in url):
        raise _Refused("The webhook URL contains spaces.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _Refused(f"The webhook URL is malformed: {exc}.") from exc
    allow_private = _allow_private()
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_private):
        raise _Refused("The webhook URL must start with https://.")
    host = parts.hostname
    if not host:
        raise _Refused("The webhook URL names no host.")
    if parts.username or parts.password:
        raise _Refused("The webhook URL may not carry a user name or password.")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise _Refused(f"The host {host} does not resolve ({exc}).", transient=True) from exc
    for info in infos:
        address = str(info[4][0])
        if not _public(address):
            raise _Refused(f"The host {host} resolves to {address}, which is not a public address.")


def subscriber_webhook_url_problem(url: str) -> str:
    """Why Vigil will not send to ``url`` ("" when it will): not https, malformed, longer than
    255 characters, credentials in it, or a host that does not resolve or resolves to an
    address that is not public (unless ``VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE``)."""
    try:
        _check(url)
    except _Refused as refused:
        return refused.message
    return ""


class SubscriberBackend:
    def send(self, notification: Notification) -> str:
        url = notification.recipient
        try:
            _check(url)
        except _Refused as refused:
            if refused.transient:
                raise TransientDeliveryError(f"{SERVICE}: {refused.message}") from refused
            raise PermanentDeliveryError(f"{SERVICE} refused: {refused.message}") from refused
        body = (notification.body or "").encode()
        try:
            json.loads(body)
        except ValueError as exc:
            raise PermanentDeliveryError(f"{SERVICE}: the body is not JSON ({exc}).") from exc
        response = post(
            service=SERVICE,
            url=url,
            data=body,
            headers={
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: notification.idempotency_key,
                STANDARD_IDEMPOTENCY_HEADER: notification.idempotency_key,
                SIGNATURE_HEADER: sign(subscriber_webhook_secret(url), body),
            },
        )
        return response.headers.get("X-Request-Id", "")
