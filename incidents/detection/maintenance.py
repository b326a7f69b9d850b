"""Maintenance windows: planned work during which an integration's alerts, or the alerts routed
to a service (from any integration), are recorded but open no incident and page no one.

A window applies to an alert when every target it names matches: its integration is the
alert's, and its service is the one the alert is routed to (:mod:`.routing`). A window naming
both silences that integration's alerts routed to that service; one naming only a service
silences that service's alerts from every integration. It is active from ``starts_at``
(included) to ``ends_at`` (excluded), judged at the delivery's receipt time, so a delivery
received during a window and processed later is still silenced.

What a silenced firing alert does (:mod:`.firing`): stored with ``maintenance`` set and no
incident; it joins no incident (even one its group already has), raises no severity, pages no
one. Its repeats during the window are counted on the same row. Its first repeat once the
window has ended is treated as a new alert: it joins the group's active incident or opens
one, and that incident's timeline says when it first fired and that it paged no one then. A
resolve during a window is applied as usual.

The windows active at a delivery's receipt time are read once per delivery
(:func:`windows_active`): from the windows each process keeps while none changes, or in one
query on the ``ends_at`` index.

Windows are written through :func:`maintenance_window_create`, :func:`maintenance_window_update`
and :func:`maintenance_window_delete` (admin and API); they need
``incidents.change_integration``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..errors import InvalidInput
from ..models import Integration, MaintenanceWindow, Service
from ..services.catalog import ServiceInUse, require_policy_perm, validated_save
from ..services.common import audited_delete
from .state import DETECTION_CONFIG

WINDOW_FIELDS = ("reason", "integration", "service", "starts_at", "ends_at")
CHANGEABLE_FIELDS = ("reason", "starts_at", "ends_at")
# The longest window: planned work, not a way to switch an integration off (disable it).
LONGEST = timedelta(days=31)
# How far ahead a window may be planned.
AHEAD = timedelta(days=366)


class WindowInUse(ServiceInUse):
    """A window that recorded alerts is kept: those alerts name it."""


# --- validation -------------------------------------------------------------------------------


def _resolve_targets(fields: dict[str, Any]) -> dict[str, Any]:
    fields = dict(fields)
    value = fields.get("integration")
    if value is not None and not isinstance(value, Integration):
        integration = (
            Integration.objects.filter(pk=value).first() if isinstance(value, int) else None
        )
        if integration is None:
            raise InvalidInput({"integration": f"Unknown integration {value!r}."})
        fields["integration"] = integration
    value = fields.get("service")
    if value is not None and not isinstance(value, Service):
        service = Service.objects.filter(slug=value).first()
        if service is None:
            raise InvalidInput({"service": f"Unknown service {value!r}."})
        fields["service"] = service
    return fields


def _check_times(starts_at: Any, ends_at: Any, *, now: datetime) -> None:
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not isinstance(value, datetime) or timezone.is_naive(value):
            raise InvalidInput({name: "Give a date and time with its time zone."})
    if starts_at > now + AHEAD:
        raise InvalidInput({"starts_at": f"Plan at most {AHEAD.days} days ahead."})
    if ends_at <= starts_at:
        raise InvalidInput({"ends_at": "The window must end after it starts."})
    if ends_at - starts_at > LONGEST:
        raise InvalidInput(
            {
                "ends_at": f"A window lasts at most {LONGEST.days} days (disable the integration "
                "to stop it for longer)."
            }
        )


# --- services ---------------------------------------------------------------------------------


@transaction.atomic
def maintenance_window_create(
    *, actor: Any, source: str, now: datetime | None = None, **fields: Any
) -> MaintenanceWindow:
    """Add a maintenance window. ``reason`` and ``ends_at`` are required, and an
    ``integration`` (instance or id) or a ``service`` (instance or slug), or both;
    ``starts_at`` defaults to now. A window that would already have ended is refused.
    ``created_by`` is the actor. Needs ``incidents.change_integration``. Applies to
    deliveries received from ``starts_at`` on (not to alerts already processed). Not
    idempotent."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    unknown = sorted(set(fields) - set(WINDOW_FIELDS))
    if unknown:
        raise InvalidInput({name: "Unknown field." for name in unknown})
    now = now or timezone.now()
    fields = _resolve_targets(fields)
    if fields.get("integration") is None and fields.get("service") is None:
        raise InvalidInput(
            {
                "integration": "Choose the integration or the service (or both) to put in "
                "maintenance."
            }
        )
    if fields.get("starts_at") is None:
        fields["starts_at"] = now
    if fields.get("ends_at") is None:
        raise InvalidInput({"ends_at": "This field is required."})
    _check_times(fields["starts_at"], fields["ends_at"], now=now)
    if fields["ends_at"] <= now:
        raise InvalidInput({"ends_at": "This window would already have ended."})
    window = MaintenanceWindow(created_by=_user_or_none(actor), **fields)
    validated_save(window, actor=actor, reason=f"created via {source}")
    return window


@transaction.atomic
def maintenance_window_update(
    *,
    window: MaintenanceWindow,
    actor: Any,
    source: str,
    now: datetime | None = None,
    **changes: Any,
) -> MaintenanceWindow:
    """Change a window's reason or times; its targets never change (alerts it recorded name
    it). A window that has ended is kept as it was. Once it has started its start stays; an
    end at or before now ends it now (ending early). Needs ``incidents.change_integration``.
    Idempotent: no change, no write."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    unknown = sorted(set(changes) - set(CHANGEABLE_FIELDS))
    if unknown:
        raise InvalidInput({name: "This field cannot be changed." for name in unknown})
    now = now or timezone.now()
    locked = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
    changed = {name: value for name, value in changes.items() if getattr(locked, name) != value}
    if not changed:
        return locked
    if locked.ends_at <= now:
        raise InvalidInput({"ends_at": "This window has ended; it is kept as it was."})
    started = locked.starts_at <= now
    if started and "starts_at" in changed:
        raise InvalidInput({"starts_at": "This window has started; its start stays."})
    starts_at = changed.get("starts_at", locked.starts_at)
    ends_at = changed.get("ends_at", locked.ends_at)
    if isinstance(ends_at, datetime) and timezone.is_aware(ends_at) and ends_at <= now:
        if not started:
            raise InvalidInput({"ends_at": "The window must end after it starts."})
        ends_at = changed["ends_at"] = now  # ended early
    _check_times(starts_at, ends_at, now=now)
    for name, value in changed.items():
        setattr(locked, name, value)
    validated_save(locked, actor=actor, reason=f"updated {', '.join(sorted(changed))} via {source}")
    return locked


@transaction.atomic
def maintenance_window_delete(*, window: MaintenanceWindow, actor: Any, source: str) -> None:
    """Delete a window that recorded no alert (one planned by mistake); a window that did is
    kept, and can be ended early instead. Needs ``incidents.change_integration``."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    locked = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
    if locked.alerts.exists():
        raise WindowInUse(
            {"maintenance": "Alerts were recorded during this window; end it instead."}
        )
    audited_delete(locked, actor=actor, reason=f"deleted via {source}")


def _user_or_none(actor: Any) -> Any:
    return actor if actor is not None and getattr(actor, "pk", None) else None


# --- selectors --------------------------------------------------------------------------------


def maintenance_windows_list():
    return MaintenanceWindow.objects.select_related("integration", "service", "created_by")


# The windows kept per process: every one that had not ended a day before they were read. A
# delivery received before that (retried long after) reads them from the database.
WINDOWS_LOOKBACK = timedelta(days=1)


def _windows_unended() -> tuple[datetime, list[MaintenanceWindow]]:
    since = timezone.now() - WINDOWS_LOOKBACK
    return since, list(
        MaintenanceWindow.objects.filter(ends_at__gt=since).order_by("-ends_at", "id")
    )


def windows_active(
    *, integration: Integration, service_ids: Iterable[int | None], at: datetime
) -> list[MaintenanceWindow]:
    """The windows active at ``at`` that may silence alerts of ``integration`` routed to one of
    ``service_ids``, the one ending last first: read from the windows kept per process while
    none changes, or in one query (on the ``ends_at`` index)."""
    services = {pk for pk in service_ids if pk is not None}
    since, unended = DETECTION_CONFIG.get("windows", _windows_unended)
    if at >= since:
        return [
            window
            for window in unended
            if window.starts_at <= at < window.ends_at
            and (
                window.integration_id == integration.pk
                or (window.integration_id is None and window.service_id in services)
            )
        ]
    target = Q(integration=integration)
    if services:
        target |= Q(integration__isnull=True, service_id__in=sorted(services))
    return list(
        MaintenanceWindow.objects.filter(target, ends_at__gt=at, starts_at__lte=at).order_by(
            "-ends_at", "id"
        )
    )


def window_for(
    windows: list[MaintenanceWindow], *, integration_id: int, service_id: int | None
) -> MaintenanceWindow | None:
    """The window (of ``windows``, active ones) that silences an alert of the integration
    routed to the service: the one ending last."""
    for window in windows:
        if window.integration_id not in (None, integration_id):
            continue
        if window.service_id is not None and window.service_id != service_id:
            continue
        return window
    return None


def window_describe(window: MaintenanceWindow) -> str:
    """``'Database upgrade' (2026-11-27 09:00–11:00 UTC)``, in Vigil's time zone."""
    start = timezone.localtime(window.starts_at)
    end = timezone.localtime(window.ends_at)
    end_text = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
    return f"'{window.reason}' ({start:%Y-%m-%d %H:%M}–{end_text} {end.tzname()})"


def window_target(window: MaintenanceWindow) -> str:
    parts = []
    if window.integration_id:
        parts.append(f"integration {window.integration}")
    if window.service_id:
        parts.append(f"service {window.service}")
    return " and ".join(parts)
