"""The inbound webhooks. Plain Django views (no session, no CSRF, no content negotiation): a
sender is answered after one key lookup and one INSERT.

Every request goes through the same gates, in this order, and a refusal writes nothing, is
logged, and is answered with a JSON error (``{"status", "code", "detail", "errors"}``, the
API's shape; PagerDuty's own shape on its endpoint):

====  ==========================  ============================================================
405   method_not_allowed          anything but POST
415   unsupported_media_type      a Content-Type other than application/json (or ``+json``)
413   payload_too_large           a declared or actual body over 1 MiB (checked before reading
                                  and again on the bytes read)
404   not_found                   no integration of this kind has the URL key
403   integration_disabled        the integration is disabled
401   authentication_failed       missing or wrong credential of the integration's scheme
                                  (bearer token, static header, Basic, signature), or a
                                  signed timestamp missing (when required), malformed or
                                  outside the replay window; ``WWW-Authenticate`` names
                                  the Bearer or Basic scheme
400   parse_error / invalid       not UTF-8 JSON, or not a valid payload of the sender
409   replayed                    a signed timestamp (generic, Grafana) already accepted:
                                  the same request again
====  ==========================  ============================================================

PagerDuty (``/hooks/pagerduty/v2/enqueue``, and ``/v2/enqueue`` so that a client pointed at
Vigil's base URL works unchanged) answers as PagerDuty does: 202 ``{"status": "success",
"message": "Event processed", "dedup_key": ...}``, 400 ``{"status": "invalid event",
"message": ..., "errors": [...]}`` (an unknown routing key too: "Invalid routing key", as
PagerDuty), 403 for a disabled integration, 429 with ``Retry-After`` past
``VIGIL_PAGERDUTY_RATE`` events per routing key.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..models import Integration, IntegrationKind
from ..models.detection import BASIC_AUTH_USER, SECRET_AUTH, IntegrationAuth, default_auth
from ..ratelimit import rate_limit_hit, rate_parse
from .grouping import delivery_group_hash
from .intake import delivery_accept
from .parsing import PayloadError, pagerduty_errors, parse_delivery, parse_pagerduty
from .replay import signature_claim
from .senders import SenderTest
from .verify import (
    GRAFANA_TIMESTAMP,
    VIGIL_TIMESTAMP,
    Signed,
    VerificationFailed,
    signature_max_age,
    verify_basic,
    verify_bearer,
    verify_grafana,
    verify_header,
    verify_vigil_signature,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1024 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_KEPT_HEADERS = {
    "HTTP_USER_AGENT": "User-Agent",
    "CONTENT_TYPE": "Content-Type",
    "CONTENT_LENGTH": "Content-Length",
    "HTTP_X_FORWARDED_FOR": "X-Forwarded-For",
    GRAFANA_TIMESTAMP: "X-Grafana-Alerting-Signature-Timestamp",
    VIGIL_TIMESTAMP: "X-Vigil-Timestamp",
}


class Refused(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


def max_body() -> int:
    return int(getattr(settings, "VIGIL_HOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY))


def _log_refusal(request: HttpRequest, kind: str, refused: Refused, integration: Any) -> None:
    logger.warning(
        "Refused %s webhook: %s %s: %s (integration %s, from %s)",
        kind,
        refused.status,
        refused.code,
        refused.detail,
        getattr(integration, "pk", None),
        request.META.get("REMOTE_ADDR"),
    )


def _gate(request: HttpRequest) -> None:
    """Method, content type and declared size: checked before any lookup or read."""
    if request.method != "POST":
        raise Refused(405, "method_not_allowed", f"Method {request.method} not allowed: POST only.")
    content_type = (request.content_type or "").lower()
    if not (content_type == "application/json" or content_type.endswith("+json")):
        raise Refused(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type or '(none)'} not accepted: send application/json.",
        )
    declared_size_check(request)


def declared_size_check(request: HttpRequest) -> None:
    """A malformed or oversize ``Content-Length`` is refused before anything is read."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if not declared:
        return
    try:
        length = int(declared)
    except ValueError:
        raise Refused(400, "parse_error", "Invalid Content-Length header.") from None
    if length > max_body():
        raise Refused(413, "payload_too_large", f"The body is larger than {max_body()} bytes.")


def _read(request: HttpRequest) -> bytes:
    """At most the size limit plus one byte, so an oversize body is never read whole."""
    limit = max_body()
    if (
        not request.META.get("CONTENT_LENGTH")
        and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        body = request.environ["wsgi.input"].read(limit + 1)
    else:
        body = request.read(limit + 1)
    if len(body) > limit:
        raise Refused(413, "payload_too_large", f"The body is larger than {limit} bytes.")
    return body


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json(body: bytes) -> tuple[str, Any]:
    try:
        text = body.decode("utf-8")
        return text, json.loads(text, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refused(400, "parse_error", f"The body is not valid UTF-8 JSON: {exc}") from None


def _headers(request: HttpRequest) -> dict[str, str]:
    return {
        name: request.META[meta][:500]
        for meta, name in _KEPT_HEADERS.items()
        if meta in request.META
    }


class HookIntegration(NamedTuple):
    """What a request needs of its integration."""

    pk: int
    key: str
    kind: str
    secret: str
    enabled: bool
    require_timestamp: bool = True
    # The effective scheme (the kind's default filled in); a signature unless said otherwise.
    auth: str = IntegrationAuth.HMAC
    auth_header: str = "X-Vigil-Token"
    # The grouping rule's label names (empty: the sender's own grouping).
    group_by: tuple[str, ...] = ()


# Integrations as looked up by the hooks, per process, for a few seconds: a stream of alerts
# then costs no lookup per request. A change (disabled, new secret) reaches every web process
# within ``VIGIL_HOOK_INTEGRATION_CACHE_SECONDS``, and this process at once (post_save).
_cache: dict[tuple[str, str], tuple[float, HookIntegration | None]] = {}
_CACHE_MAX = 1000
DEFAULT_CACHE_SECONDS = 5.0


def _forget_integrations(**kwargs: Any) -> None:
    _cache.clear()


post_save.connect(_forget_integrations, sender=Integration, dispatch_uid="hooks.integrations")
post_delete.connect(_forget_integrations, sender=Integration, dispatch_uid="hooks.integrations")


def _integration(key: str, kind: str) -> HookIntegration | None:
    if not _KEY.match(key or ""):
        return None
    now = time.monotonic()
    cached = _cache.get((key, kind))
    if cached is not None and cached[0] > now:
        return cached[1]
    # Hand-written: one indexed lookup, cheaper than building an ORM query.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, secret, enabled, require_timestamp, auth, auth_header, group_by "
            f"FROM {Integration._meta.db_table} WHERE key = %s AND kind = %s",
            [key, kind],
        )
        row = cursor.fetchone()
    found = None
    if row is not None:
        found = HookIntegration(
            pk=row[0],
            key=key,
            kind=kind,
            secret=row[1],
            enabled=bool(row[2]),
            require_timestamp=bool(row[3]),
            auth=row[4] or default_auth(kind, row[1]),
            auth_header=row[5],
            group_by=tuple(json.loads(row[6]) if isinstance(row[6], str) else row[6] or ()),
        )
    ttl = float(getattr(settings, "VIGIL_HOOK_INTEGRATION_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))
    if ttl > 0:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()  # unknown keys sent at random cannot grow it without bound
        _cache[(key, kind)] = (now + ttl, found)
    return found


# What a 401 asks for, per scheme (RFC 9110 §11.6.1).
_CHALLENGE = {
    IntegrationAuth.BEARER: 'Bearer realm="vigil"',
    IntegrationAuth.BASIC: 'Basic realm="vigil", charset="UTF-8"',
}


def _verify(
    request: HttpRequest, integration: HookIntegration, body: bytes, now: float
) -> Signed | None:
    """Check the credential of the integration's scheme; returns the verified signature
    under HMAC (its timestamp is then claimed once). The URL key alone needs nothing more.
    Schemes of other views (routing key, SNS) are never set on these kinds (validation)."""
    kind, scheme, secret = integration.kind, integration.auth, integration.secret
    meta = request.META
    required = integration.require_timestamp
    try:
        if scheme == IntegrationAuth.URL_KEY:
            return None
        if scheme not in SECRET_AUTH:
            raise VerificationFailed(f"The {scheme} scheme is not accepted on this endpoint.")
        if not secret:
            raise VerificationFailed("This integration has no secret to verify with.")
        if scheme == IntegrationAuth.BEARER:
            verify_bearer(meta, secret)
        elif scheme == IntegrationAuth.BASIC:
            verify_basic(meta, secret, BASIC_AUTH_USER)
        elif scheme == IntegrationAuth.HEADER:
            verify_header(meta, secret, integration.auth_header)
        elif kind == IntegrationKind.GRAFANA:
            return verify_grafana(meta, secret, body, require_timestamp=required, now=now)
        else:
            return verify_vigil_signature(meta, secret, body, require_timestamp=required, now=now)
    except VerificationFailed as exc:
        challenge = _CHALLENGE.get(scheme)
        raise Refused(
            401,
            "authentication_failed",
            str(exc),
            headers={"WWW-Authenticate": challenge} if challenge else {},
        ) from None
    return None


def _accept(
    request: HttpRequest, integration: HookIntegration, signed: Signed | None, now: float, **kw
) -> int:
    """Store the delivery; a signed timestamp is claimed in the same transaction, so the
    delivery and the record that its signature was used commit together or not at all."""
    fields = {
        "integration_id": integration.pk,
        "headers": _headers(request),
        "remote_addr": request.META.get("REMOTE_ADDR") or None,
        **kw,
    }
    if signed is None or signed.timestamp is None:
        return delivery_accept(**fields)
    with transaction.atomic():
        if not signature_claim(
            integration_id=integration.pk,
            signature=signed.signature,
            signed_at=signed.timestamp,
            max_age=signature_max_age(),
            now=now,
        ):
            raise Refused(
                409,
                "replayed",
                "This signed request was already accepted (same signature and timestamp): "
                "a replay, or a retry of a delivery Vigil has. Sign each new request with "
                "the current time.",
            )
        return delivery_accept(**fields)


def _error_response(refused: Refused) -> JsonResponse:
    response = JsonResponse(
        {
            "status": refused.status,
            "code": refused.code,
            "detail": refused.detail,
            "errors": refused.extra.get("errors", {}),
        },
        status=refused.status,
    )
    if refused.status == 405:
        response["Allow"] = "POST"
    for name, value in refused.extra.get("headers", {}).items():
        response[name] = value
    return response


def _keyed_hook(request: HttpRequest, key: str, kind: str) -> JsonResponse:
    integration = None
    try:
        _gate(request)
        integration = _integration(key, kind)
        if integration is None:
            raise Refused(404, "not_found", "No integration of this kind has this key.")
        if not integration.enabled:
            raise Refused(403, "integration_disabled", "This integration is disabled.")
        body = _read(request)
        now = time.time()
        signed = _verify(request, integration, body, now)
        text, payload = _json(body)
        try:
            parsed = parse_delivery(kind, payload, keep_raw=False)
        except RecursionError:
            raise Refused(400, "invalid", "The payload is nested too deeply.") from None
        except PayloadError as exc:
            errors = exc.errors
            raise Refused(400, "invalid", f"Invalid payload. {exc}"[:2000], errors=errors) from None
        except SenderTest as test:
            logger.info("%s test message for integration %s", kind, integration.pk)
            return JsonResponse(test.body, status=test.status)
        delivery_id = _accept(
            request,
            integration,
            signed,
            now,
            body=text,
            alert_count=len(parsed.alerts),
            group_hash=delivery_group_hash(integration.group_by, parsed.alerts),
        )
    except Refused as refused:
        _log_refusal(request, kind, refused, integration)
        return _error_response(refused)
    return JsonResponse(
        {"status": "accepted", "delivery": delivery_id, "alerts": len(parsed.alerts)},
        status=202,
    )


@csrf_exempt
def alertmanager_hook(request: HttpRequest, key: str) -> JsonResponse:
    """Prometheus Alertmanager ``webhook_config`` (payload version 4)."""
    return _keyed_hook(request, key, IntegrationKind.ALERTMANAGER)


@csrf_exempt
def grafana_hook(request: HttpRequest, key: str) -> JsonResponse:
    """Grafana alerting webhook contact point (payload version 1)."""
    return _keyed_hook(request, key, IntegrationKind.GRAFANA)


@csrf_exempt
def generic_hook(request: HttpRequest, key: str) -> JsonResponse:
    """Vigil's generic signed JSON alert."""
    return _keyed_hook(request, key, IntegrationKind.GENERIC)


# Kinds posted to ``/hooks/<kind>/<key>/`` through :func:`sender_hook` (their parsers live in
# ``senders``). CloudWatch (SNS) and heartbeat pings have views of their own.
SENDER_KINDS = frozenset(
    {
        IntegrationKind.DATADOG,
        IntegrationKind.NEWRELIC,
        IntegrationKind.NAGIOS,
        IntegrationKind.ZABBIX,
        IntegrationKind.SPLUNK,
        IntegrationKind.ELASTIC,
    }
)


@csrf_exempt
def sender_hook(request: HttpRequest, kind: str, key: str) -> JsonResponse:
    """A sender of ``SENDER_KINDS`` (Datadog, New Relic, Nagios/Icinga, Zabbix, Splunk,
    Elastic): the same gates as every keyed hook, its own parser."""
    if kind not in SENDER_KINDS:
        return _error_response(Refused(404, "not_found", "No such kind of sender."))
    return _keyed_hook(request, key, kind)


# --- PagerDuty Events API v2 --------------------------------------------------------------------


def _pd_response(status: int, label: str, message: str, errors: list[str] | None = None):
    body: dict[str, Any] = {"status": label, "message": message}
    if errors is not None:
        body["errors"] = errors
    return JsonResponse(body, status=status)


def throttle_wait(integration: HookIntegration) -> int | None:
    """Seconds to wait when this routing key is over ``VIGIL_PAGERDUTY_RATE``, else None. A
    sliding window, counted atomically in Redis for every web process (per process without
    Redis); a cache outage lets events through (an alert is worth more than the limit)."""
    value = getattr(settings, "VIGIL_PAGERDUTY_RATE", "")
    try:
        rate = rate_parse(value)
    except ValueError:
        logger.error("VIGIL_PAGERDUTY_RATE=%r is not a rate; no limit applied", value)
        return None
    if rate is None:
        return None
    decision = rate_limit_hit(key=f"pagerduty:{integration.pk}", rate=rate)
    return None if decision.allowed else decision.retry_after


@csrf_exempt
def pagerduty_enqueue(request: HttpRequest) -> JsonResponse:
    """PagerDuty Events API v2 ``enqueue``: trigger, acknowledge and resolve by dedup key."""
    integration = None
    try:
        _gate(request)
        body = _read(request)
        text, payload = _json(body)
    except Refused as refused:
        _log_refusal(request, "pagerduty", refused, None)
        label = "invalid event" if refused.status == 400 else refused.code.replace("_", " ")
        response = _pd_response(refused.status, label, refused.detail, [refused.detail])
        if refused.status == 405:
            response["Allow"] = "POST"
        return response

    def invalid(errors: list[str]) -> JsonResponse:
        refused = Refused(400, "invalid event", "; ".join(errors))
        _log_refusal(request, "pagerduty", refused, integration)
        return _pd_response(400, "invalid event", "Event object is invalid", errors)

    routing_key = payload.get("routing_key") if isinstance(payload, dict) else None
    if not isinstance(routing_key, str) or not routing_key.strip():
        return invalid(["'routing_key' is missing or blank"])
    integration = _integration(routing_key.strip(), IntegrationKind.PAGERDUTY)
    if integration is None:
        return invalid(["Invalid routing key"])
    if not integration.enabled:
        refused = Refused(403, "integration_disabled", "This integration is disabled.")
        _log_refusal(request, "pagerduty", refused, integration)
        return _pd_response(403, "forbidden", refused.detail, [refused.detail])
    wait = throttle_wait(integration)
    if wait is not None:
        refused = Refused(429, "throttled", f"Rate limit reached; retry in {wait} s.")
        _log_refusal(request, "pagerduty", refused, integration)
        response = _pd_response(
            429, "throttle event", "Requests for this integration are arriving too quickly."
        )
        response["Retry-After"] = str(wait)
        return response
    errors = pagerduty_errors(payload)
    if errors:
        return invalid(errors)
    dedup_key = payload.get("dedup_key") or uuid.uuid4().hex
    try:
        parsed = parse_pagerduty(payload, dedup_key=dedup_key)
    except RecursionError:
        return invalid(["The event is nested too deeply."])
    delivery_accept(
        integration_id=integration.pk,
        body=text,
        headers=_headers(request),
        remote_addr=request.META.get("REMOTE_ADDR") or None,
        alert_count=len(parsed.alerts),
        dedup_key=parsed.dedup_key,
        group_hash=delivery_group_hash(integration.group_by, parsed.alerts),
    )
    return JsonResponse(
        {"status": "success", "message": "Event processed", "dedup_key": parsed.dedup_key},
        status=202,
    )
