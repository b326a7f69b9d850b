"""Scheduled maintenance: planned windows that move by themselves.

A window is ``scheduled`` until its start (``scheduled_for``), when the sweep starts it: each of
its components goes ``under_maintenance`` (through :func:`component_status_set`, so the change is
an interval naming the maintenance). It may be marked ``verifying`` by hand while the work is
checked; at its end (``scheduled_until``) the sweep completes it and each component goes back to
the status it had before the window, unless someone changed the component meanwhile (an incident
update, a manual change): then it is left as it is, since that change is newer news than the
maintenance. A component that another window still holds under maintenance is left to that
window. The communications lead may also start or complete a window early, verify it, edit it
(before its start; only its title, body and end once it runs) and cancel it before it starts.

Every step locks the window's row, returns early when it already happened (so the sweep and a
button pressed at the same moment move it once), writes the window's history and calls
:func:`public_changed`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.models import Source
from incidents.services.common import audited_save

from ..errors import StepNotAllowed, require
from ..markdown import markdown_to_html
from ..models import (
    Component,
    ComponentStatus,
    ComponentStatusInterval,
    Maintenance,
    MaintenanceStatus,
)
from ..public.site import public_changed
from .components import component_status_set
from .fanout import fanout_for_maintenance

S = MaintenanceStatus
ACTIVE = (S.IN_PROGRESS, S.VERIFYING)
# What each status allows, for the 409's ``allowed_actions`` and the admin's buttons.
ALLOWED_ACTIONS: dict[str, list[str]] = {
    S.SCHEDULED: ["edit", "start", "cancel"],
    S.IN_PROGRESS: ["edit", "verify", "complete"],
    S.VERIFYING: ["edit", "complete"],
    S.COMPLETED: [],
    S.CANCELLED: [],
}
# Fields that may still change once the window has started.
EDITABLE_WHILE_RUNNING = {"title", "body", "scheduled_until"}
EDITABLE = {"title", "body", "scheduled_for", "scheduled_until", "components"}
SWEEP_BATCH = 100


def _refuse(maintenance: Maintenance, action: str) -> StepNotAllowed:
    return StepNotAllowed(
        action=action,
        status=maintenance.get_status_display().lower(),
        allowed=ALLOWED_ACTIONS[maintenance.status],
        what="a maintenance",
    )


def _locked(maintenance: Maintenance) -> Maintenance:
    return Maintenance.objects.select_for_update().get(pk=maintenance.pk)


def _components(components: Iterable[Any]) -> list[Component]:
    found = list(components or [])
    if not found:
        raise InvalidInput({"components": "Choose the components the maintenance affects."})
    if not all(isinstance(component, Component) for component in found):
        raise InvalidInput({"components": "Unknown component."})
    return sorted(set(found), key=lambda component: component.pk)


def _check_window(*, scheduled_for: datetime, scheduled_until: datetime, now: datetime) -> None:
    if scheduled_for is None or scheduled_until is None:
        raise InvalidInput({"scheduled_for": "Give the window's start and end."})
    if scheduled_until <= scheduled_for:
        raise InvalidInput({"scheduled_until": "The window must end after it starts."})
    if scheduled_until <= now:
        raise InvalidInput({"scheduled_until": "The window must end in the future."})


def _title(title: str) -> str:
    title = (title or "").strip()
    if not title:
        raise InvalidInput({"title": "Give the maintenance a title."})
    if len(title) > 200:
        raise InvalidInput({"title": "At most 200 characters."})
    return title


@transaction.atomic
def maintenance_schedule(
    *,
    actor: Any,
    source: str,
    title: str,
    scheduled_for: datetime,
    scheduled_until: datetime,
    components: Iterable[Component],
    body: str = "",
) -> Maintenance:
    """Plan a maintenance window. Its end must come after its start and lie in the future; a
    start already past is allowed (the sweep starts the window on its next run). Needs
    ``communications.add_maintenance``. Not idempotent: each call plans a window."""
    require(actor, "communications.add_maintenance", "schedule maintenance")
    title = _title(title)
    _check_window(scheduled_for=scheduled_for, scheduled_until=scheduled_until, now=timezone.now())
    chosen = _components(components)
    maintenance = Maintenance(
        title=title,
        body=body or "",
        body_html=markdown_to_html(body or ""),
        scheduled_for=scheduled_for,
        scheduled_until=scheduled_until,
        created_by=actor,
    )
    audited_save(maintenance, actor=actor, reason=f"scheduled ({source})")
    maintenance.components.set(chosen)
    fanout_for_maintenance(maintenance=maintenance, step=S.SCHEDULED)
    public_changed()
    return maintenance


@transaction.atomic
def maintenance_edit(*, maintenance: Maintenance, actor: Any, source: str, **changes: Any):
    """Change a window's title, body, start, end or components. Before it starts, anything;
    while it runs, its title, body and end (the components already went under maintenance);
    once completed or cancelled, nothing (409). Idempotent: unchanged values change nothing."""
    require(actor, "communications.change_maintenance", "edit maintenance")
    unknown = set(changes) - EDITABLE
    if unknown:
        raise InvalidInput({name: "This field cannot be changed." for name in sorted(unknown)})
    locked = _locked(maintenance)
    if locked.status not in (S.SCHEDULED, *ACTIVE):
        raise _refuse(locked, "edit")
    current_components = set(locked.components.all())
    if "components" in changes:
        new_components = set(_components(changes["components"]))
        if new_components == current_components:
            del changes["components"]
        else:
            changes["components"] = new_components
    if "title" in changes:
        changes["title"] = _title(changes["title"])
    changed = {
        name: value
        for name, value in changes.items()
        if name == "components" or getattr(locked, name) != value
    }
    if not changed:
        return locked
    if locked.status in ACTIVE:
        frozen = sorted(set(changed) - EDITABLE_WHILE_RUNNING)
        if frozen:
            raise InvalidInput(
                {
                    name: "The maintenance has started: only its title, body and end may change."
                    for name in frozen
                }
            )
    if "scheduled_for" in changed or "scheduled_until" in changed:
        _check_window(
            scheduled_for=changed.get("scheduled_for", locked.scheduled_for),
            scheduled_until=changed.get("scheduled_until", locked.scheduled_until),
            now=timezone.now(),
        )
    for name, value in changed.items():
        if name == "components":
            continue
        setattr(locked, name, value)
    if "body" in changed:
        locked.body = changed["body"] or ""
        locked.body_html = markdown_to_html(locked.body)
    audited_save(locked, actor=actor, reason=f"edited: {', '.join(sorted(changed))} ({source})")
    if "components" in changed:
        locked.components.set(sorted(changed["components"], key=lambda c: c.pk))
    public_changed()
    return locked


@transaction.atomic
def maintenance_cancel(*, maintenance: Maintenance, actor: Any, source: str) -> Maintenance:
    """Call off a window that has not started (a running one is completed instead: 409).
    Idempotent."""
    require(actor, "communications.change_maintenance", "cancel maintenance")
    locked = _locked(maintenance)
    if locked.status == S.CANCELLED:
        return locked
    if locked.status != S.SCHEDULED:
        raise _refuse(locked, "cancel")
    locked.status = S.CANCELLED
    audited_save(locked, actor=actor, reason=f"cancelled ({source})")
    fanout_for_maintenance(maintenance=locked, step=S.CANCELLED)
    public_changed()
    return locked


@transaction.atomic
def maintenance_start(
    *, maintenance: Maintenance, actor: Any, source: str, now: datetime | None = None
) -> Maintenance:
    """Start a scheduled window (the sweep at its start, or early by hand): each component goes
    ``under_maintenance`` with an interval naming the window. Idempotent: a running window is
    left as it is."""
    require(actor, "communications.change_maintenance", "start maintenance")
    locked = _locked(maintenance)
    if locked.status in ACTIVE:
        return locked
    if locked.status != S.SCHEDULED:
        raise _refuse(locked, "start")
    now = now or timezone.now()
    for component in locked.components.order_by("pk"):
        component_status_set(
            component=component,
            status=ComponentStatus.UNDER_MAINTENANCE,
            actor=actor,
            reason=f"Maintenance started: {locked.title}",
            maintenance=locked,
            at=now,
        )
    locked.status = S.IN_PROGRESS
    locked.started_at = now
    audited_save(locked, actor=actor, reason=f"started ({source})")
    fanout_for_maintenance(maintenance=locked, step=S.IN_PROGRESS)
    public_changed()
    return locked


@transaction.atomic
def maintenance_verify(
    *, maintenance: Maintenance, actor: Any, source: str, now: datetime | None = None
) -> Maintenance:
    """Mark a running window as being verified (by hand; its components stay under
    maintenance until it completes). Idempotent."""
    require(actor, "communications.change_maintenance", "verify maintenance")
    locked = _locked(maintenance)
    if locked.status == S.VERIFYING:
        return locked
    if locked.status != S.IN_PROGRESS:
        raise _refuse(locked, "verify")
    locked.status = S.VERIFYING
    locked.verifying_at = now or timezone.now()
    audited_save(locked, actor=actor, reason=f"verifying ({source})")
    public_changed()
    return locked


@transaction.atomic
def maintenance_complete(
    *, maintenance: Maintenance, actor: Any, source: str, now: datetime | None = None
) -> Maintenance:
    """Complete a running window (the sweep at its end, or early by hand). Each component goes
    back to the status it had before the window, if it is still under maintenance by a window
    and no other running window holds it; a component someone changed meanwhile is left as it
    is. Idempotent: a completed window is left as it is."""
    require(actor, "communications.change_maintenance", "complete maintenance")
    locked = _locked(maintenance)
    if locked.status == S.COMPLETED:
        return locked
    if locked.status not in ACTIVE:
        raise _refuse(locked, "complete")
    now = now or timezone.now()
    for component in locked.components.order_by("pk"):
        restore = _status_before_maintenance(component=component, completing=locked)
        if restore is not None:
            component_status_set(
                component=component,
                status=restore,
                actor=actor,
                reason=f"Maintenance completed: {locked.title}",
                maintenance=locked,
                at=now,
            )
    locked.status = S.COMPLETED
    locked.completed_at = now
    audited_save(locked, actor=actor, reason=f"completed ({source})")
    fanout_for_maintenance(maintenance=locked, step=S.COMPLETED)
    public_changed()
    return locked


def _status_before_maintenance(*, component: Component, completing: Maintenance) -> str | None:
    """The status to give ``component`` back when ``completing`` ends, or ``None`` to leave it:
    someone changed it since a window put it under maintenance, or another running window
    still holds it."""
    # The component first, as component_status_set locks it (ordered by pk: its model ordering
    # joins the group, and PostgreSQL refuses FOR UPDATE on an outer join's nullable side).
    Component.objects.select_for_update().filter(pk=component.pk).order_by("pk").first()
    current = (
        ComponentStatusInterval.objects.filter(component=component, ended_at__isnull=True)
        .only("pk", "status", "maintenance_id", "started_at")
        .first()
    )
    if (
        current is None
        or current.status != ComponentStatus.UNDER_MAINTENANCE
        or current.maintenance_id is None
    ):
        return None
    others = (
        Maintenance.objects.filter(status__in=ACTIVE, components=component)
        .exclude(pk=completing.pk)
        .exists()
    )
    if others:
        return None
    before = (
        ComponentStatusInterval.objects.filter(
            component=component, started_at__lte=current.started_at
        )
        .exclude(pk=current.pk)
        .order_by("-started_at", "-pk")
        .values_list("status", flat=True)
        .first()
    )
    if before is None or before == ComponentStatus.UNDER_MAINTENANCE:
        return ComponentStatus.OPERATIONAL
    return before


# --- the sweep ----------------------------------------------------------------------------------


def _due_to_start(now: datetime) -> Q:
    return Q(status=S.SCHEDULED, scheduled_for__lte=now)


def _due_to_complete(now: datetime) -> Q:
    return Q(status__in=ACTIVE, scheduled_until__lte=now)


def maintenance_sweep(*, now: datetime | None = None) -> int:
    """Move every window that is due: start those whose start has come, complete those whose
    end has come (a window whose whole span passed before any sweep saw it is completed without
    touching its components). Each window is claimed with ``SELECT ... FOR UPDATE SKIP
    LOCKED`` in its own transaction, so concurrent sweeps move it once; a window someone holds
    is left to the next sweep. Returns the number of steps taken."""
    now = now or timezone.now()
    moved = 0
    for due in (_due_to_start(now), _due_to_complete(now)):
        ids = list(
            Maintenance.objects.filter(due)
            .order_by("pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        for pk in ids:
            moved += _sweep_one(pk=pk, due=due, now=now)
    return moved


@transaction.atomic
def _sweep_one(*, pk: int, due: Q, now: datetime) -> int:
    # Re-read under the lock: between the list and here another sweep or a button may have
    # moved it.
    claimed = Maintenance.objects.select_for_update(skip_locked=True).filter(due, pk=pk).first()
    if claimed is None:
        return 0
    if claimed.status == S.SCHEDULED and claimed.scheduled_until <= now:
        claimed.status = S.COMPLETED
        claimed.completed_at = now
        audited_save(claimed, actor=None, reason="window passed before it started (system)")
        public_changed()
        return 1
    step = maintenance_start if claimed.status == S.SCHEDULED else maintenance_complete
    step(maintenance=claimed, actor=None, source=Source.SYSTEM, now=now)
    return 1
