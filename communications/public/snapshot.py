"""What the public may see, as one snapshot: the page, its overall status, the components, the
incidents with their published updates and the scheduled maintenance, in Statuspage's v2 shapes
(the JSON API serves these dicts as they are; the HTML page, the feeds and the badges read them).

Only public data goes in: components' public names and statuses, *published* status updates
(their public title, public status, sanitized body), maintenance that is not cancelled. Nothing
else about an incident (its internal title, severity, notes, people) is read.

**Timestamps** are UTC ISO 8601 to the second with a ``Z`` (``2026-11-27T10:02:00Z``), as in the
Statuspage sample consumers are tested against. **Links** (``shortlink``) name the ``.html``
file, so they work on Vigil and on any static host of the export alike.

**Overall status** (``status.indicator`` / ``status.description``), Statuspage's rules:

* ``none`` "All Systems Operational": every component operational, no unresolved incident with
  an impact;
* ``minor`` "Minor Service Outage": a component in degraded performance;
* ``major`` "Partial System Outage": a component in partial outage, or some (not all) in
  major outage;
* ``critical`` "Major Service Outage": every component in major outage;
* ``maintenance`` "Service Under Maintenance": nothing worse than components under maintenance
  or a maintenance in progress.

An unresolved incident raises the indicator to its impact if that is worse.

**Incident impact** follows the same rule applied to the components the incident's published
updates affected (the worst status they ever gave each): none without components, ``minor`` for
degraded performance, ``major`` for a partial or a major outage, ``critical`` when it put every
component in major outage. The internal severity stays internal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import Prefetch

from ..markdown import markdown_to_text
from ..models import (
    Component,
    ComponentGroup,
    ComponentStatus,
    Maintenance,
    MaintenanceStatus,
    StatusPageSettings,
    StatusUpdate,
    StatusUpdateComponent,
    UpdateState,
    UpdateStatus,
)
from .site import RenderContext

PAGE_ID = "vigil"
INCIDENT_LIMIT = 50  # Statuspage's incidents.json shows the 50 most recent

SEVERITY = {
    ComponentStatus.OPERATIONAL: 0,
    ComponentStatus.UNDER_MAINTENANCE: 1,
    ComponentStatus.DEGRADED_PERFORMANCE: 2,
    ComponentStatus.PARTIAL_OUTAGE: 3,
    ComponentStatus.MAJOR_OUTAGE: 4,
}
IMPACT_ORDER = ["none", "maintenance", "minor", "major", "critical"]
DESCRIPTIONS = {
    "none": "All Systems Operational",
    "maintenance": "Service Under Maintenance",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}
UNRESOLVED = {UpdateStatus.INVESTIGATING, UpdateStatus.IDENTIFIED, UpdateStatus.MONITORING}
MAINTENANCE_STEP_TEXT = {
    MaintenanceStatus.IN_PROGRESS: "Scheduled maintenance is currently in progress. "
    "We will provide updates as necessary.",
    MaintenanceStatus.VERIFYING: "Verification is currently underway for the maintenance items.",
    MaintenanceStatus.COMPLETED: "The scheduled maintenance has been completed.",
}


def iso(value: datetime | None) -> str | None:
    """Statuspage's timestamp: UTC, to the second, ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def impact_of(statuses: list[str], *, component_count: int) -> str:
    """The indicator for a set of component statuses (see the module's rules)."""
    if not statuses:
        return "none"
    worst = max(statuses, key=lambda status: SEVERITY[status])
    if worst == ComponentStatus.MAJOR_OUTAGE:
        majors = sum(1 for status in statuses if status == ComponentStatus.MAJOR_OUTAGE)
        return "critical" if majors >= component_count else "major"
    return {
        ComponentStatus.OPERATIONAL: "none",
        ComponentStatus.UNDER_MAINTENANCE: "maintenance",
        ComponentStatus.DEGRADED_PERFORMANCE: "minor",
        ComponentStatus.PARTIAL_OUTAGE: "major",
    }[worst]


def worse(a: str, b: str) -> str:
    return a if IMPACT_ORDER.index(a) >= IMPACT_ORDER.index(b) else b


def public_snapshot(context: RenderContext) -> dict[str, Any]:
    """The public snapshot for this render (built once, then shared by every renderer).

    Keys: ``page``, ``status``, ``components`` (groups included, as Statuspage lists them),
    ``incidents`` (every incident with a published update, newest first; ``unresolved`` is the
    list of those not resolved), ``scheduled_maintenances`` (not cancelled, newest first) —
    all in Statuspage's v2 shapes — plus, for the HTML page and the feeds, ``body_html``
    (incident-update id -> the update's sanitized HTML; ``maintenance-<id>`` -> the maintenance
    notice's sanitized HTML),
    ``settings`` (the :class:`StatusPageSettings` row), ``groups`` (group component dicts in
    order, each with ``children``: its component dicts) and ``ungrouped`` (component dicts
    without a group).
    """
    if "snapshot" not in context.memo:
        context.memo["snapshot"] = _build(context)
    return context.memo["snapshot"]


def _build(context: RenderContext) -> dict[str, Any]:
    page_settings = StatusPageSettings.objects.filter(pk=1).first() or StatusPageSettings()
    url = (page_settings.url or settings.VIGIL_BASE_URL + "/status").rstrip("/")

    components = list(Component.objects.select_related("service", "group"))
    groups = list(ComponentGroup.objects.all())
    component_dicts: dict[int, dict[str, Any]] = {}
    for component in components:
        component_dicts[component.pk] = {
            "id": component.code,
            "name": component.name,
            "status": component.status,
            "created_at": iso(component.created_at),
            "updated_at": iso(_component_updated(component)),
            "position": component.position,
            "description": component.description or None,
            "showcase": component.showcase,
            "start_date": component.start_date.isoformat(),
            "group_id": _group_id(component.group) if component.group else None,
            "page_id": PAGE_ID,
            "group": False,
            "only_show_if_degraded": component.only_show_if_degraded,
        }
    group_dicts = []
    for group in groups:
        members = [c for c in components if c.group_id == group.pk]
        if not members:
            continue
        member_statuses = [c.status for c in members]
        group_dicts.append(
            {
                "id": _group_id(group),
                "name": group.name,
                "status": max(member_statuses, key=lambda status: SEVERITY[status]),
                "created_at": iso(group.created_at),
                "updated_at": iso(
                    max([group.updated_at] + [_component_updated(c) for c in members])
                ),
                "position": group.position,
                "description": group.description or None,
                "showcase": False,
                "start_date": None,
                "group_id": None,
                "page_id": PAGE_ID,
                "group": True,
                "only_show_if_degraded": False,
                "components": [c.code for c in members],
            }
        )
    ungrouped = [component_dicts[c.pk] for c in components if c.group_id is None]
    # Statuspage lists groups and ungrouped components in page order, each group's members after it.
    ordered: list[dict[str, Any]] = []
    top = sorted(
        [(g["position"], 0, g["name"], g) for g in group_dicts]
        + [(d["position"], 1, d["name"], d) for d in ungrouped],
        key=lambda entry: entry[:3],
    )
    group_views = []
    for _, is_component, _, item in top:
        ordered.append(item)
        if not is_component:
            children = [component_dicts[c.pk] for c in components if _belongs(c, item)]
            ordered.extend(children)
            group_views.append({**item, "children": children})
    total_components = len(components)

    body_html: dict[str, str] = {}
    incidents = _incidents(url, component_dicts, total_components, body_html)
    maintenances = _maintenances(url, component_dicts, body_html)

    statuses = [c.status for c in components]
    indicator = impact_of(statuses, component_count=total_components)
    unresolved = [incident for incident in incidents if incident["status"] in UNRESOLVED]
    for incident in unresolved:
        if incident["impact"] != "none":
            indicator = worse(indicator, incident["impact"])
    if indicator == "none" and any(m["status"] == "in_progress" for m in maintenances):
        indicator = "maintenance"

    changes = [c.updated_at for c in components] + [c.status_changed_at for c in components]
    changes += [g.updated_at for g in groups]
    changes += [_parse(i["updated_at"]) for i in incidents]
    changes += [_parse(m["updated_at"]) for m in maintenances]
    changes = [value for value in changes if value is not None]
    updated_at = max(changes) if changes else context.now

    return {
        "page": {
            "id": PAGE_ID,
            "name": page_settings.name,
            "url": url,
            "time_zone": page_settings.time_zone,
            "updated_at": iso(updated_at),
        },
        "status": {"indicator": indicator, "description": DESCRIPTIONS[indicator]},
        "components": ordered,
        "incidents": incidents,
        "unresolved": unresolved,
        "scheduled_maintenances": maintenances,
        "body_html": body_html,
        "settings": page_settings,
        "groups": group_views,
        "ungrouped": ungrouped,
    }


def _group_id(group: ComponentGroup) -> str:
    return f"group-{group.pk}"


def _belongs(component: Component, group_dict: dict[str, Any]) -> bool:
    return component.group is not None and _group_id(component.group) == group_dict["id"]


def _component_updated(component: Component) -> datetime:
    return max(component.updated_at, component.status_changed_at)


def _parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _incidents(
    url: str,
    component_dicts: dict[int, dict[str, Any]],
    total_components: int,
    body_html: dict[str, str],
) -> list[dict[str, Any]]:
    updates = (
        StatusUpdate.objects.filter(state=UpdateState.PUBLISHED, published_at__isnull=False)
        .select_related("incident")
        .prefetch_related(
            Prefetch(
                "affected",
                queryset=StatusUpdateComponent.objects.select_related("component__service"),
            )
        )
        .order_by("incident_id", "published_at", "pk")
    )
    by_incident: dict[int, list[StatusUpdate]] = {}
    for update in updates:
        by_incident.setdefault(update.incident_id, []).append(update)

    incidents = []
    for published in by_incident.values():
        incident = published[0].incident
        first, latest = published[0], published[-1]
        worst: dict[int, str] = {}
        update_dicts = []
        for update in published:
            update_id = str(update.pk)
            affected = []
            for row in update.affected.all():
                previous = worst.get(row.component_id, ComponentStatus.OPERATIONAL)
                if SEVERITY[row.new_status] > SEVERITY[previous]:
                    worst[row.component_id] = row.new_status
                else:
                    worst.setdefault(row.component_id, row.new_status)
                affected.append(
                    {
                        "code": row.component.code,
                        "name": row.component.name,
                        "old_status": row.old_status or row.new_status,
                        "new_status": row.new_status,
                    }
                )
            body_html[update_id] = update.body_html
            update_dicts.append(
                {
                    "id": update_id,
                    "status": update.public_status,
                    "body": markdown_to_text(update.body),
                    "incident_id": incident.number,
                    "created_at": iso(update.published_at),
                    "updated_at": iso(update.published_at),
                    "display_at": iso(update.published_at),
                    "affected_components": affected,
                }
            )
        # When it last moved into monitoring (kept once resolved, as Statuspage does).
        monitoring_at, previous_status = None, None
        for update in published:
            if update.public_status == UpdateStatus.MONITORING != previous_status:
                monitoring_at = update.published_at
            previous_status = update.public_status
        resolved_at = None
        if latest.public_status not in UNRESOLVED:
            resolved = [u for u in published if u.public_status == UpdateStatus.RESOLVED]
            resolved_at = (resolved[-1] if resolved else latest).published_at
        incidents.append(
            {
                "id": incident.number,
                "name": latest.public_title,
                "status": latest.public_status,
                "impact": _incident_impact(worst, total_components),
                "created_at": iso(first.published_at),
                "updated_at": iso(latest.published_at),
                "monitoring_at": iso(monitoring_at),
                "resolved_at": iso(resolved_at),
                "started_at": iso(first.published_at),
                "shortlink": f"{url}/incidents/{incident.number}.html",
                "page_id": PAGE_ID,
                "incident_updates": list(reversed(update_dicts)),
                "components": [component_dicts[pk] for pk in worst if pk in component_dicts],
            }
        )
    incidents.sort(key=lambda item: (item["created_at"], item["id"]), reverse=True)
    return incidents


def _incident_impact(worst: dict[int, str], total_components: int) -> str:
    statuses = [s for s in worst.values() if s != ComponentStatus.UNDER_MAINTENANCE]
    if not statuses:
        return "none"
    return impact_of(statuses, component_count=total_components)


def _maintenances(
    url: str, component_dicts: dict[int, dict[str, Any]], body_html: dict[str, str]
) -> list[dict[str, Any]]:
    rows = (
        Maintenance.objects.exclude(status=MaintenanceStatus.CANCELLED)
        .prefetch_related("components")
        .order_by("-scheduled_for", "-pk")
    )
    result = []
    for maintenance in rows:
        maintenance_id = str(maintenance.pk)
        body_html[f"maintenance-{maintenance_id}"] = maintenance.body_html
        steps = [(MaintenanceStatus.SCHEDULED, maintenance.created_at, maintenance.body)]
        for status, at in (
            (MaintenanceStatus.IN_PROGRESS, maintenance.started_at),
            (MaintenanceStatus.VERIFYING, maintenance.verifying_at),
            (MaintenanceStatus.COMPLETED, maintenance.completed_at),
        ):
            if at is not None:
                steps.append((status, at, None))
        component_list = [
            component_dicts[c.pk] for c in maintenance.components.all() if c.pk in component_dicts
        ]
        affected = [
            {"code": c["id"], "name": c["name"], "old_status": "operational",
             "new_status": "under_maintenance"}
            for c in component_list
        ]  # fmt: skip
        updates = []
        for status, at, body in steps:
            updates.append(
                {
                    "id": f"{maintenance_id}-{status}",
                    "status": str(status),
                    "body": markdown_to_text(body)
                    if body is not None
                    else MAINTENANCE_STEP_TEXT[status],
                    "incident_id": maintenance_id,
                    "created_at": iso(at),
                    "updated_at": iso(at),
                    "display_at": iso(at),
                    "affected_components": affected,
                }
            )
        result.append(
            {
                "id": maintenance_id,
                "name": maintenance.title,
                "status": maintenance.status,
                "impact": "maintenance",
                "created_at": iso(maintenance.created_at),
                "updated_at": iso(max(maintenance.updated_at, steps[-1][1])),
                "monitoring_at": None,
                "resolved_at": iso(maintenance.completed_at),
                "started_at": iso(maintenance.started_at or maintenance.scheduled_for),
                "shortlink": f"{url}/maintenance/{maintenance_id}.html",
                "page_id": PAGE_ID,
                "incident_updates": list(reversed(updates)),
                "components": component_list,
                "scheduled_for": iso(maintenance.scheduled_for),
                "scheduled_until": iso(maintenance.scheduled_until),
            }
        )
    return result
