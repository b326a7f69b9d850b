"""/healthz: the watchdog an outside monitor polls, so Vigil is paged about when Vigil itself
stops escalating.

200 when the escalation and SLA sweeps ran within the allowed age, no incident event has waited
longer than that for its handlers, and the database, the broker and the cache answer; 503
otherwise. Never a 500: every check catches its own failure.

Anyone may ask, and gets the overall status and one word per check
(``{"status": "failing", "checks": {"database": "ok", "cache": "unavailable", ...}}``). The
details (error messages, which name hosts and ports, ages, latencies, the outbox backlog) are
for a valid API token (``Authorization: Token <key>``) or a staff session; a token that is not
valid is a 401 and is counted as a failed login.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from rest_framework.exceptions import AuthenticationFailed, Throttled

from incidents.api.authentication import TokenAuthentication
from incidents.services.security import login_failure_from_request

logger = logging.getLogger(__name__)

ESCALATION_SWEEP_KEY = "vigil:escalation:sweep:last"
SLA_SWEEP_KEY = "vigil:incidents:sla_sweep:last"
SWEEPS = {"escalation_sweep": ESCALATION_SWEEP_KEY, "sla_sweep": SLA_SWEEP_KEY}
CACHE_PROBE_KEY = "vigil:healthz:probe"

# The one word per check an anonymous caller gets ("reason" in each detailed check):
#   database, broker, cache   ok | unavailable
#   escalation_sweep, sla_sweep   ok | late | never_ran | unknown (the cache cannot be read)
#   events   ok | backlog | unknown (the backlog cannot be read)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def check_database() -> dict[str, Any]:
    connection = connections[DEFAULT_DB_ALIAS]
    started = time.monotonic()
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        # A broken connection is dropped so the next poll connects afresh.
        try:
            connection.close_if_unusable_or_obsolete()
        except Exception:
            logger.debug("Closing the broken database connection failed", exc_info=True)
        return {"ok": False, "reason": "unavailable", "error": _error(exc)}
    return {
        "ok": True,
        "reason": "ok",
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def check_broker() -> dict[str, Any]:
    # The project's Celery app, without importing the project: an app never imports ``config``.
    from celery import current_app as app

    timeout = float(getattr(settings, "VIGIL_HEALTH_BROKER_TIMEOUT_SECONDS", 2.0))
    started = time.monotonic()
    try:
        # Bounded waits for every transport: a broker that accepts connections but never
        # answers must not hang the watchdog.
        with app.connection_for_write(
            connect_timeout=timeout,
            transport_options={"socket_connect_timeout": timeout, "socket_timeout": timeout},
        ) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout
            )
            # Connecting may be lazy; opening a channel makes the transport talk to the broker.
            conn.default_channel  # noqa: B018
            transport = conn.transport_cls
    except Exception as exc:
        return {"ok": False, "reason": "unavailable", "error": _error(exc)}
    return {
        "ok": True,
        "reason": "ok",
        "transport": str(transport),
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def check_cache() -> dict[str, Any]:
    """The cache holds the sweeps' heartbeats, the rate limits and the failed-login counters:
    a probe is written and read back. While it fails, rate limits let requests through."""
    started = time.monotonic()
    try:
        cache.set(CACHE_PROBE_KEY, time.time_ns(), timeout=60)
        read = cache.get(CACHE_PROBE_KEY)
    except Exception as exc:
        return {"ok": False, "reason": "unavailable", "error": _error(exc)}
    if read is None:
        # (Another poll may have written its own probe in between: any value read back will do.)
        return {"ok": False, "reason": "unavailable", "error": "a value written was not kept"}
    return {
        "ok": True,
        "reason": "ok",
        "backend": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def check_sweep(key: str, *, now: datetime, max_age: float) -> dict[str, Any]:
    try:
        raw = cache.get(key)
    except Exception as exc:
        return {
            "ok": False,
            "reason": "unknown",
            "last": None,
            "error": f"cache unreachable: {_error(exc)}",
        }
    last = parse_datetime(raw) if isinstance(raw, str) else None
    if last is None:
        return {"ok": False, "reason": "never_ran", "last": None, "error": "has never run"}
    if timezone.is_naive(last):
        last = timezone.make_aware(last, timezone.utc)
    age = (now - last).total_seconds()
    result: dict[str, Any] = {
        "ok": age <= max_age,
        "reason": "ok" if age <= max_age else "late",
        "last": last.isoformat(),
        "age_seconds": round(age, 1),
        "max_age_seconds": max_age,
    }
    if not result["ok"]:
        result["error"] = f"last ran {round(age)} s ago (allowed {round(max_age)} s)"
    return result


def sweep_ages(*, now: datetime | None = None) -> dict[str, float | None]:
    """Seconds since each sweep /healthz watches last ran, by its check's name
    (``escalation_sweep``, ``sla_sweep``): None when it never ran or its heartbeat cannot be
    read. Read from the same heartbeats as the checks, for the Prometheus exposition."""
    now = now or timezone.now()
    max_age = float(getattr(settings, "VIGIL_HEALTH_SWEEP_MAX_AGE_SECONDS", 120.0))
    return {
        name: check_sweep(key, now=now, max_age=max_age).get("age_seconds")
        for name, key in SWEEPS.items()
    }


def check_events(*, now: datetime, max_age: float) -> dict[str, Any]:
    """Incident events must be followed promptly: a due event older than the sweep's allowed
    age means no dispatcher is running (no worker, or its queue is not consumed)."""
    from incidents.selectors import events_backlog

    try:
        backlog = events_backlog(now=now)
    except Exception as exc:
        return {"ok": False, "reason": "unknown", "error": _error(exc)}
    ok = backlog["oldest_due_seconds"] <= max_age
    result: dict[str, Any] = {"ok": ok, "reason": "ok" if ok else "backlog", **backlog}
    if not result["ok"]:
        result["error"] = (
            f"an incident event has waited {round(backlog['oldest_due_seconds'])} s for its "
            f"handlers (allowed {round(max_age)} s): is a worker consuming every queue?"
        )
    return result


def health_report(*, now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    from .selectors import outbox_backlog

    now = now or timezone.now()
    max_age = float(getattr(settings, "VIGIL_HEALTH_SWEEP_MAX_AGE_SECONDS", 120.0))
    checks: dict[str, dict[str, Any]] = {
        "database": check_database(),
        "broker": check_broker(),
        "cache": check_cache(),
    }
    for name, key in SWEEPS.items():
        if checks["cache"]["ok"]:
            checks[name] = check_sweep(key, now=now, max_age=max_age)
        else:
            # Not asked again: a cache that does not answer would make each read wait.
            checks[name] = {
                "ok": False,
                "reason": "unknown",
                "last": None,
                "error": "cache unreachable: the heartbeat cannot be read",
            }
    outbox: dict[str, Any] | None = None
    if checks["database"]["ok"]:
        try:
            outbox = outbox_backlog(now=now).as_dict()
        except Exception as exc:
            outbox = {"error": _error(exc)}
        checks["events"] = check_events(now=now, max_age=max_age)
    problems = [f"{name}: {check['error']}" for name, check in checks.items() if not check["ok"]]
    healthy = not problems
    report = {
        "status": "ok" if healthy else "failing",
        "time": now.isoformat(),
        "problems": problems,
        "checks": checks,
        "outbox": outbox,
    }
    return report, healthy


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see: the overall status and one word per check."""
    return {
        "status": report["status"],
        "checks": {name: check["reason"] for name, check in report.get("checks", {}).items()},
    }


class _InvalidToken(Exception):
    pass


class _TokensThrottled(Exception):
    def __init__(self, wait: float | None) -> None:
        super().__init__(wait)
        self.wait = wait


def may_see_details(request: HttpRequest) -> bool:
    """A valid API token, or a staff session. Raises ``_InvalidToken`` for a token that is not
    valid, and ``_TokensThrottled`` when the client's address has refused tokens past the
    API's limit (the API's own token authentication, so a token guessed here counts against
    the same per-address budget); anything that cannot be verified (the database is down)
    counts as anonymous, so the watchdog still answers."""
    if request.META.get("HTTP_AUTHORIZATION"):
        try:
            if TokenAuthentication().authenticate(request) is not None:
                return True
        except Throttled as exc:
            raise _TokensThrottled(exc.wait) from None
        except AuthenticationFailed:
            raise _InvalidToken from None
        except Exception:
            logger.warning("/healthz could not verify an API token", exc_info=True)
            return False
    try:
        user = request.user
        return bool(user.is_authenticated and user.is_active and user.is_staff)
    except Exception:
        logger.warning("/healthz could not load the session's user", exc_info=True)
        return False


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        details = may_see_details(request)
    except _InvalidToken:
        login_failure_from_request(request=request, channel="api")
        response = JsonResponse(
            {"status": 401, "code": "authentication_failed", "detail": "Invalid token."},
            status=401,
        )
        response["WWW-Authenticate"] = "Token"
        return response
    except _TokensThrottled as exc:
        response = JsonResponse(
            {"status": 429, "code": "throttled", "detail": str(Throttled(exc.wait).detail)},
            status=429,
        )
        if exc.wait is not None:
            response["Retry-After"] = str(max(1, math.ceil(exc.wait)))
        return response
    try:
        report, healthy = health_report()
    except Exception as exc:  # the watchdog must answer even when its own code breaks
        logger.exception("Health check failed")
        report, healthy = {"status": "failing", "problems": [_error(exc)], "checks": {}}, False
    return JsonResponse(report if details else summary(report), status=200 if healthy else 503)
