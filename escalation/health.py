"""/healthz: the watchdog an outside monitor polls, so Vigil is paged about when Vigil itself
stops escalating.

200 when the escalation and SLA sweeps ran within the allowed age, no incident event has waited
longer than that for its handlers, and the database and broker answer; 503 otherwise, with the
reasons. Never a 500: every check catches its own failure.
"""

from __future__ import annotations

import logging
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

logger = logging.getLogger(__name__)

ESCALATION_SWEEP_KEY = "vigil:escalation:sweep:last"
SLA_SWEEP_KEY = "vigil:incidents:sla_sweep:last"
SWEEPS = {"escalation_sweep": ESCALATION_SWEEP_KEY, "sla_sweep": SLA_SWEEP_KEY}


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
        return {"ok": False, "error": _error(exc)}
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


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
        return {"ok": False, "error": _error(exc)}
    return {
        "ok": True,
        "transport": str(transport),
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def check_sweep(key: str, *, now: datetime, max_age: float) -> dict[str, Any]:
    try:
        raw = cache.get(key)
    except Exception as exc:
        return {"ok": False, "last": None, "error": f"cache unreachable: {_error(exc)}"}
    last = parse_datetime(raw) if isinstance(raw, str) else None
    if last is None:
        return {"ok": False, "last": None, "error": "has never run"}
    if timezone.is_naive(last):
        last = timezone.make_aware(last, timezone.utc)
    age = (now - last).total_seconds()
    result: dict[str, Any] = {
        "ok": age <= max_age,
        "last": last.isoformat(),
        "age_seconds": round(age, 1),
        "max_age_seconds": max_age,
    }
    if not result["ok"]:
        result["error"] = f"last ran {round(age)} s ago (allowed {round(max_age)} s)"
    return result


def check_events(*, now: datetime, max_age: float) -> dict[str, Any]:
    """Incident events must be followed promptly: a due event older than the sweep's allowed
    age means no dispatcher is running (no worker, or its queue is not consumed)."""
    from incidents.selectors import events_backlog

    try:
        backlog = events_backlog(now=now)
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}
    result: dict[str, Any] = {"ok": backlog["oldest_due_seconds"] <= max_age, **backlog}
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
    }
    for name, key in SWEEPS.items():
        checks[name] = check_sweep(key, now=now, max_age=max_age)
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


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        report, healthy = health_report()
    except Exception as exc:  # the watchdog must answer even when its own code breaks
        logger.exception("Health check failed")
        return JsonResponse({"status": "failing", "problems": [_error(exc)]}, status=503)
    return JsonResponse(report, status=200 if healthy else 503)
