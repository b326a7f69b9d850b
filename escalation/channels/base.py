"""Helpers shared by the channel backends: settings, the idempotency header, plain HTTP posts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import urllib3
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


@dataclass(frozen=True)
class HttpResponse:
    """A provider's answer to :func:`post`: its status, headers (case-insensitive) and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in (self.headers.get("Content-Type") or "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip("\"'")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")


class _Transport:
    """The HTTP client of :func:`post`: urllib3's connection pools, which keep connections (and
    TLS sessions) to a provider open between deliveries, configured from the environment as
    requests configures itself: a proxy from ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` unless
    ``NO_PROXY`` names the host, and the CA bundle from ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` (else certifi's). urllib3 is what requests sends with; going to it
    directly saves requests' per-call preparation, about half of a local POST's cost. The
    environment is read once per scheme and host: it does not change while a worker runs."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], urllib3.PoolManager] = {}
        self._managers: dict[tuple[str | None, str], urllib3.PoolManager] = {}

    def manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        manager = self._routes.get(key)
        if manager is None:
            proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
            ca = (
                os.environ.get("REQUESTS_CA_BUNDLE")
                or os.environ.get("CURL_CA_BUNDLE")
                or requests.utils.DEFAULT_CA_BUNDLE_PATH
            )
            manager = self._routes[key] = self._manager(proxy or None, ca)
        return manager

    def _manager(self, proxy: str | None, ca: str) -> urllib3.PoolManager:
        manager = self._managers.get((proxy, ca))
        if manager is not None:
            return manager
        # As requests' adapter: ten pools of up to ten connections, certificates verified.
        options: dict[str, Any] = {"num_pools": 10, "maxsize": 10, "cert_reqs": "CERT_REQUIRED"}
        options["ca_cert_dir" if os.path.isdir(ca) else "ca_certs"] = ca
        if proxy is None:
            manager = urllib3.PoolManager(**options)
        elif proxy.lower().startswith("socks"):
            try:
                from urllib3.contrib.socks import SOCKSProxyManager
            except ImportError as exc:  # PySocks is not installed
                raise PermanentDeliveryError(
                    f"The proxy {proxy!r} needs SOCKS support (PySocks), which is not installed."
                ) from exc
            username, password = requests.utils.get_auth_from_url(proxy)
            manager = SOCKSProxyManager(
                proxy, username=username or None, password=password or None, **options
            )
        else:
            url = requests.utils.prepend_scheme_if_needed(proxy, "http")
            username, password = requests.utils.get_auth_from_url(url)
            headers = (
                urllib3.make_headers(proxy_basic_auth=f"{username}:{password}")
                if username
                else None
            )
            manager = urllib3.ProxyManager(url, proxy_headers=headers, **options)
        self._managers[(proxy, ca)] = manager
        return manager


_transports: dict[int, _Transport] = {}


def _transport() -> _Transport:
    """One transport per process, so deliveries reuse connections; keyed by process id because
    a forked pool child must not share its parent's sockets."""
    pid = os.getpid()
    transport = _transports.get(pid)
    if transport is None:
        _transports.clear()
        transport = _transports[pid] = _Transport()
    return transport


def post(
    *,
    service: str,
    url: str,
    data: bytes,
    headers: dict[str, str],
) -> HttpResponse:
    """POST ``data`` and classify the outcome; redirects are not followed (a hook that moves is
    a configuration error, not somewhere to send an incident to), nor is a failed request tried
    again here (the outbox retries, with backoff)."""
    timeout = http_timeout()
    try:
        manager = _transport().manager(url)
        answer = manager.request(
            "POST",
            url,
            body=data,
            headers={"User-Agent": USER_AGENT, "Accept": "*/*", **headers},
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            redirect=False,
            retries=False,
        )
    except (
        # Before TimeoutError: urllib3 makes a refused connection a kind of connect timeout.
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.SSLError,
        urllib3.exceptions.ProxyError,
    ) as exc:
        raise TransientDeliveryError(f"{service} unreachable: {exc}") from exc
    except urllib3.exceptions.TimeoutError as exc:
        raise TransientDeliveryError(f"{service} timed out: {exc}") from exc
    except (urllib3.exceptions.HTTPError, ValueError) as exc:
        # A malformed URL, an unknown scheme, an undecodable answer.
        raise PermanentDeliveryError(f"{service} request failed: {exc}") from exc
    response = HttpResponse(answer.status, answer.headers, answer.data)
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
