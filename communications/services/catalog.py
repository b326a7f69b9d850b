"""The status page's catalogue as the admin and the API edit it: components (added through
:func:`component_create`, their status changed through :func:`component_status_set` with a
reason), component groups and the page's settings. Each service checks the role permission,
saves with a history record naming the actor and the source, and calls
:func:`public_changed` when the page shows what changed."""

from __future__ import annotations

import zoneinfo
from datetime import date
from typing import Any

from django.db import transaction

from incidents.errors import InvalidInput
from incidents.services.common import audited_save

from ..errors import require
from ..models import Component, ComponentGroup, ComponentStatus, StatusPageSettings
from ..public.site import public_changed
from .components import component_create, component_status_set

COMPONENT_FIELDS = {"group", "position", "description", "showcase", "only_show_if_degraded"}
GROUP_FIELDS = {"name", "description", "position"}
SETTINGS_FIELDS = {"name", "url", "logo_url", "home_url", "support_url", "time_zone"}


def _unknown(changes: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidInput({name: "This field cannot be changed here." for name in unknown})


def _text(value: Any, *, field: str, limit: int, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidInput({field: "This field is required."})
    if len(value) > limit:
        raise InvalidInput({field: f"At most {limit} characters."})
    return value


@transaction.atomic
def component_add(
    *,
    actor: Any,
    source: str,
    service: Any,
    group: ComponentGroup | None = None,
    position: int = 0,
    description: str = "",
    status: str = ComponentStatus.OPERATIONAL,
    start_date: date | None = None,
    showcase: bool = True,
    only_show_if_degraded: bool = False,
) -> Component:
    """Put a service on the status page (:func:`component_create`, which needs
    ``communications.add_component`` and a public name), with its display options."""
    component = component_create(
        service=service,
        actor=actor,
        group=group,
        position=position or 0,
        description=_text(description, field="description", limit=300),
        status=status or ComponentStatus.OPERATIONAL,
        start_date=start_date,
    )
    if not showcase or only_show_if_degraded:
        component.showcase = showcase
        component.only_show_if_degraded = only_show_if_degraded
        audited_save(component, actor=actor, reason=f"display options ({source})")
    return component


@transaction.atomic
def component_edit(
    *,
    component: Component,
    actor: Any,
    source: str,
    status: str | None = None,
    reason: str = "",
    **changes: Any,
) -> Component:
    """Change a component's group, position, description or display options, and its public
    status, which needs a reason (it is kept in the component's history and names the actor).
    Needs ``communications.change_component``. Idempotent: unchanged values change nothing."""
    require(actor, "communications.change_component", "change components")
    _unknown(changes, COMPONENT_FIELDS)
    if "description" in changes:
        changes["description"] = _text(changes["description"], field="description", limit=300)
    locked = Component.objects.select_for_update().get(pk=component.pk)
    if status is not None and status != locked.status:
        if status not in ComponentStatus.values:
            raise InvalidInput({"status": f"Unknown status {status!r}."})
        reason = _text(reason, field="reason", limit=300)
        if not reason:
            raise InvalidInput(
                {"reason": "Say why the status changes (it is kept in the component's history)."}
            )
        locked, _previous = component_status_set(
            component=locked, status=status, actor=actor, reason=f"{reason} ({source})"
        )
    changed = {name: value for name, value in changes.items() if getattr(locked, name) != value}
    if changed:
        for name, value in changed.items():
            setattr(locked, name, value)
        audited_save(locked, actor=actor, reason=f"edited: {', '.join(sorted(changed))} ({source})")
        public_changed()
    return locked


@transaction.atomic
def component_group_create(
    *, actor: Any, source: str, name: str, description: str = "", position: int = 0
) -> ComponentGroup:
    """Add a named group of components. Needs ``communications.add_componentgroup``."""
    require(actor, "communications.add_componentgroup", "add component groups")
    name = _text(name, field="name", limit=120, required=True)
    if ComponentGroup.objects.filter(name__iexact=name).exists():
        raise InvalidInput({"name": "A group with this name exists."})
    group = ComponentGroup(
        name=name,
        description=_text(description, field="description", limit=300),
        position=position or 0,
    )
    audited_save(group, actor=actor, reason=f"created ({source})")
    public_changed()
    return group


@transaction.atomic
def component_group_edit(
    *, group: ComponentGroup, actor: Any, source: str, **changes: Any
) -> ComponentGroup:
    """Rename, describe or move a group. Needs ``communications.change_componentgroup``.
    Idempotent."""
    require(actor, "communications.change_componentgroup", "change component groups")
    _unknown(changes, GROUP_FIELDS)
    locked = ComponentGroup.objects.select_for_update().get(pk=group.pk)
    if "name" in changes:
        changes["name"] = _text(changes["name"], field="name", limit=120, required=True)
        if (
            ComponentGroup.objects.filter(name__iexact=changes["name"])
            .exclude(pk=locked.pk)
            .exists()
        ):
            raise InvalidInput({"name": "A group with this name exists."})
    if "description" in changes:
        changes["description"] = _text(changes["description"], field="description", limit=300)
    changed = {name: value for name, value in changes.items() if getattr(locked, name) != value}
    if not changed:
        return locked
    for name, value in changed.items():
        setattr(locked, name, value)
    audited_save(locked, actor=actor, reason=f"edited: {', '.join(sorted(changed))} ({source})")
    public_changed()
    return locked


@transaction.atomic
def status_page_settings_edit(
    *, page: StatusPageSettings, actor: Any, source: str, **changes: Any
) -> StatusPageSettings:
    """Change the page's name, links, logo or time zone (an IANA name such as
    ``Europe/Paris``). Needs ``communications.change_statuspagesettings``. Idempotent."""
    require(actor, "communications.change_statuspagesettings", "change the status page settings")
    _unknown(changes, SETTINGS_FIELDS)
    if "name" in changes:
        changes["name"] = _text(changes["name"], field="name", limit=120, required=True)
    if "time_zone" in changes:
        changes["time_zone"] = _text(changes["time_zone"], field="time_zone", limit=64)
        if changes["time_zone"] not in zoneinfo.available_timezones():
            raise InvalidInput({"time_zone": "Unknown time zone: use an IANA name."})
    locked = StatusPageSettings.objects.select_for_update().get(pk=page.pk)
    changed = {name: value for name, value in changes.items() if getattr(locked, name) != value}
    if not changed:
        return locked
    for name, value in changed.items():
        setattr(locked, name, value)
    audited_save(locked, actor=actor, reason=f"edited: {', '.join(sorted(changed))} ({source})")
    public_changed()
    return locked
