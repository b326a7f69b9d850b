"""The heartbeat ping: ``/hooks/ping/<key>/``, for any integration with a heartbeat.

A cron job, a backup script or a systemd unit calls it when it has done its work
(``curl -fsS --retry 3 https://vigil.example.com/hooks/ping/<key>/``); each call is a signal
(:mod:`.heartbeat`). ``GET``, ``HEAD`` and ``POST`` are accepted, with any content type; a
body is read up to the hooks' size limit and ignored (a script may post its log tail). The
answer is 200 ``{"status": "ok"}``; refusals write nothing and have the hooks' JSON shape:

====  ==========================  ============================================================
405   method_not_allowed          anything but GET, HEAD or POST
413   payload_too_large           a body over the hooks' limit (1 MiB)
404   not_found                   no integration has the key
403   integration_disabled        the integration is disabled
401   authentication_failed       the credential of the integration's scheme is missing or wrong
409   no_heartbeat                the integration has no heartbeat configured
====  ==========================  ============================================================

Credentials are the integration's own (``views._verify``): a bearer token, a secret static
header or HTTP Basic when its scheme is one of those; under HMAC, ``X-Vigil-Signature`` over
``<timestamp>.<body>`` (Grafana's own signature headers for Grafana integrations), the body
being empty for a GET. A signed ping is not remembered as a used signature: sent again within
the replay window it is only the same signal again, and so a ``curl --retry`` of a ping Vigil
did record is not refused. The URL key alone suffices under the URL-key scheme (the heartbeat
kind's only one) and for PagerDuty and CloudWatch integrations, whose routing key and SNS
signature no ping can carry.
"""

from __future__ import annotations

import time

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..models import Integration, IntegrationAuth
from .heartbeat import integration_signal
from .views import (
    _KEY,
    HookIntegration,
    Refused,
    _error_response,
    _log_refusal,
    _read,
    _verify,
    declared_size_check,
)

PING_METHODS = ("GET", "HEAD", "POST")
# Schemes whose credential a ping cannot carry: the URL key (the routing key itself for
# PagerDuty) is the credential.
_KEY_ONLY = (IntegrationAuth.ROUTING_KEY, IntegrationAuth.SNS)


def _ping_target(key: str) -> Integration | None:
    """The integration of ``key``, read fresh (a ping is rare next to alerts: no cache)."""
    if not _KEY.match(key or ""):
        return None
    return (
        Integration.objects.filter(key=key)
        .only(
            "pk",
            "key",
            "kind",
            "secret",
            "enabled",
            "require_timestamp",
            "auth",
            "auth_header",
            "heartbeat_minutes",
        )
        .first()
    )


def _credentials(integration: Integration) -> HookIntegration:
    scheme = integration.effective_auth
    return HookIntegration(
        pk=integration.pk,
        key=integration.key,
        kind=integration.kind,
        secret=integration.secret,
        enabled=integration.enabled,
        require_timestamp=integration.require_timestamp,
        auth=IntegrationAuth.URL_KEY if scheme in _KEY_ONLY else scheme,
        auth_header=integration.auth_header,
    )


@csrf_exempt
def ping_hook(request: HttpRequest, key: str) -> JsonResponse:
    """A heartbeat signal: records it and answers 200 ``{"status": "ok"}``."""
    integration = None
    try:
        if request.method not in PING_METHODS:
            raise Refused(
                405,
                "method_not_allowed",
                f"Method {request.method} not allowed: GET, HEAD or POST.",
            )
        declared_size_check(request)
        integration = _ping_target(key)
        if integration is None:
            raise Refused(404, "not_found", "No integration has this key.")
        if not integration.enabled:
            raise Refused(403, "integration_disabled", "This integration is disabled.")
        body = _read(request)
        _verify(request, _credentials(integration), body, time.time())
        if integration.heartbeat_minutes is None:
            raise Refused(
                409,
                "no_heartbeat",
                "This integration has no heartbeat configured: set its heartbeat minutes "
                "(admin or API) before pinging it.",
            )
        integration_signal(integration_id=integration.pk)
    except Refused as refused:
        _log_refusal(request, "ping", refused, integration)
        response = _error_response(refused)
        if refused.status == 405:
            response["Allow"] = ", ".join(PING_METHODS)
        return response
    return JsonResponse({"status": "ok"})
