"""Helpers shared by the channel backends: settings, the idempotency header, plain HTTP posts."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

from .errors import PermanentDeliveryError, TransientDeliveryError, http_error

if TYPE_CHECKING:
    from ..models import Notification

IDEMPOTENCY_HEADER = "X-Vigil-Idempotency-Key"
USER_AGENT = "Vigil-Notifier/1.0"


def setting(name: str, default: Any = None) -> Any:
    return getattr(settings, name, default)


def http_timeout() -> float:
    return float(setting("VIGIL_NOTIFY_HTTP_TIMEOUT_SECONDS", 10))


def incident_payload(notification: Notification) -> dict[str, Any] | None:
    incident = notification.incident
    if incident is None:
        return None
    return {
        "number": incident.number,
        "title": incident.title,
        "severity": incident.severity_id,
        "status": incident.status,
        "url": f"{setting('VIGIL_BASE_URL', '')}{incident.get_absolute_url()}",
    }


def named_target(*, service: str, default: str, named: dict[str, str], recipient: str) -> str:
    """The configured URL for ``recipient``: its own named entry, else the default one.

    Only configuration holds URLs; the recipient merely picks among them, so nothing stored on
    a notification can point Vigil at an arbitrary address.
    """
    url = (named or {}).get(recipient) or default
    if not url:
        raise PermanentDeliveryError(
            f"{service} is not configured: no URL for {recipient!r} and no default URL."
        )
    return url


class _Session(requests.Session):
    """A session that reads the environment's proxy and CA settings (``HTTPS_PROXY``,
    ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...) once per scheme and host, not on every request:
    requests re-parses them for each call, a cost comparable to the rest of a delivery's
    Python work. The environment of a worker does not change while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        settings_ = self._environment.get(key)
        if settings_ is None:
            settings_ = super().merge_environment_settings(url, {}, None, None, None)
            self._environment[key] = settings_
        return {**settings_, "proxies": dict(settings_["proxies"])}


_sessions: dict[int, requests.Session] = {}


def _session() -> requests.Session:
    """One HTTP session per process, so deliveries reuse connections (and TLS handshakes) to a
    provider; keyed by process id because a forked pool child must not share its parent's
    sockets."""
    pid = os.getpid()
    session = _sessions.get(pid)
    if session is None:
        _sessions.clear()
        session = _sessions[pid] = _Session()
    return session


def post(
    *,
    service: str,
    url: str,
    data: bytes,
    headers: dict[str, str],
) -> requests.Response:
    """POST ``data`` and classify the outcome; redirects are not followed (a hook that moves is
    a configuration error, not somewhere to send an incident to)."""
    try:
        response = _session().post(
            url,
            data=data,
            headers={"User-Agent": USER_AGENT, **headers},
            timeout=http_timeout(),
            allow_redirects=False,
        )
    except requests.Timeout as exc:
        raise TransientDeliveryError(f"{service} timed out: {exc}") from exc
    except requests.ConnectionError as exc:
        raise TransientDeliveryError(f"{service} unreachable: {exc}") from exc
    except requests.RequestException as exc:
        raise PermanentDeliveryError(f"{service} request failed: {exc}") from exc
    if 300 <= response.status_code < 400:
        raise PermanentDeliveryError(
            f"{service} answered HTTP {response.status_code} (redirect to "
            f"{response.headers.get('Location', '?')}); redirects are not followed."
        )
    if response.status_code >= 400:
        raise http_error(
            service=service,
            status=response.status_code,
            headers=response.headers,
            body=response.text,
        )
    return response
