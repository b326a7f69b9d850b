"""Components' public status and its history (status intervals)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.services.common import audited_save

from ..errors import require
from ..models import Component, ComponentGroup, ComponentStatus, ComponentStatusInterval
from ..public.site import public_changed


@transaction.atomic
def component_create(
    *,
    service: Any,
    actor: Any,
    group: ComponentGroup | None = None,
    position: int = 0,
    description: str = "",
    status: str = ComponentStatus.OPERATIONAL,
    start_date: date | None = None,
    at: datetime | None = None,
) -> Component:
    """Put a service on the status page. The service needs a public name (the page never shows
    an internal one). Opens the component's first status interval at ``at`` (default now)."""
    require(actor, "communications.add_component", "add a component")
    if not (service.public_name or "").strip():
        raise InvalidInput({"service": "Give the service a public name first."})
    if Component.objects.filter(service=service).exists():
        raise InvalidInput({"service": "This service is already a component."})
    if status not in ComponentStatus.values:
        raise InvalidInput({"status": f"Unknown status {status!r}."})
    at = at or timezone.now()
    component = Component(
        service=service,
        group=group,
        position=position,
        description=description,
        status=status,
        status_changed_at=at,
        start_date=start_date or timezone.localdate(at),
    )
    audited_save(component, actor=actor, reason="added to the status page")
    ComponentStatusInterval.objects.create(
        component=component, status=status, started_at=at, actor=actor, reason="created"
    )
    public_changed()
    return component


@transaction.atomic
def component_status_set(
    *,
    component: Component,
    status: str,
    actor: Any,
    reason: str = "",
    status_update: Any = None,
    maintenance: Any = None,
    at: datetime | None = None,
) -> tuple[Component, str]:
    """Set a component's public status from ``at`` (default now): the open interval ends, a new
    one starts, naming who, why and which status update or maintenance caused it. Returns the
    component and its previous status. Idempotent: the same status changes nothing.

    No permission check of its own: the callers (publishing an update, a maintenance step, the
    admin's and API's component edit) check theirs. ``at`` may not precede the open interval's
    start (history is never rewritten).
    """
    if status not in ComponentStatus.values:
        raise InvalidInput({"status": f"Unknown status {status!r}."})
    locked = Component.objects.select_for_update().get(pk=component.pk)
    previous = locked.status
    if previous == status:
        return locked, previous
    at = at or timezone.now()
    # Ordered by pk alone: the model's ordering joins the component's group, and PostgreSQL
    # refuses FOR UPDATE on the nullable side of an outer join.
    current = (
        ComponentStatusInterval.objects.select_for_update()
        .filter(component=locked, ended_at__isnull=True)
        .order_by("pk")
        .first()
    )
    if current is not None:
        if at < current.started_at:
            raise InvalidInput({"at": "A status change cannot precede the current one."})
        current.ended_at = at
        current.save(update_fields=["ended_at"])
    ComponentStatusInterval.objects.create(
        component=locked,
        status=status,
        started_at=at,
        actor=actor,
        reason=reason[:300],
        status_update=status_update,
        maintenance=maintenance,
    )
    locked.status = status
    locked.status_changed_at = at
    audited_save(locked, actor=actor, reason=f"status {previous} -> {status}")
    public_changed()
    return locked, previous
