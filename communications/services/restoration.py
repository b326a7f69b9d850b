"""The restoration notice: when an incident is resolved, a status update is drafted for the
communications lead to edit and publish, saying which public components are working normally
again, the impact (from when to when, how long) and an apology, from public names and times
only."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils import timezone

from incidents.models import Incident, Status

from ..models import (
    Component,
    ComponentStatus,
    StatusUpdate,
    StatusUpdateComponent,
    UpdateKind,
    UpdateState,
    UpdateStatus,
)
from .policy import status_time_zone
from .updates import TITLE_MAX, status_update_create

__all__ = [
    "restoration_body",
    "restoration_components",
    "status_update_restoration_prepare",
]


def _span(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    start, end = start.astimezone(zone), end.astimezone(zone)
    label = start.tzname() or str(zone)
    if start.date() == end.date():
        return f"on {start:%-d %B %Y} from {start:%H:%M} to {end:%H:%M} ({label})"
    return f"from {start:%-d %B %Y %H:%M} to {end:%-d %B %Y %H:%M} ({label})"


def _duration(start: datetime, end: datetime) -> str:
    minutes = max(0, round((end - start).total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes or not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)


def _names(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def restoration_components(incident: Incident) -> list[Component]:
    """The public components the incident touched: those its published updates named, then
    those of its services, in page order."""
    published = StatusUpdateComponent.objects.filter(
        status_update__incident=incident, status_update__state=UpdateState.PUBLISHED
    ).values_list("component_id", flat=True)
    services = incident.services.values_list("pk", flat=True)
    components = (
        Component.objects.select_related("service")
        .filter(service__is_active=True)
        .exclude(service__public_name="")
    )
    return list(
        components.filter(pk__in=list(published)) | components.filter(service__in=list(services))
    )


def restoration_body(*, incident: Incident, components: list[Component]) -> str:
    """The restoration notice's Markdown: service restored, the impact (which components, from
    when to when in the page's time zone, how long) and an apology. Built from public names and
    times only: no internal title, summary or cause."""
    end = incident.resolved_at or timezone.now()
    start = min(incident.impact_started_at or incident.detected_at, end)
    names = _names([component.name for component in components])
    restored = (
        f"{names} {'is' if len(components) == 1 else 'are'} working normally again."
        if components
        else "The affected services are working normally again."
    )
    return (
        f"**Service restored.** {restored}\n\n"
        f"**Impact:** {_span(start, end, status_time_zone())}, {_duration(start, end)} in all, "
        f"{'customers of ' + names if components else 'some customers'} may have been unable to "
        "use the service normally.\n\n"
        "We apologise for the disruption this caused and thank you for your patience."
    )


def status_update_restoration_prepare(*, incident: Incident) -> StatusUpdate | None:
    """Draft the restoration notice of a resolved incident, for the communications lead to
    edit and publish: public status *resolved*, each component it touched back to operational,
    a body from :func:`restoration_body`. Prepared when customers were told (a published update)
    or should be (a customer-facing incident). Idempotent: while a restoration notice of the
    incident is unpublished, that one is returned; a "resolved" update published since the
    incident's last resolution means nothing to prepare; after a reopen and a new resolve, a
    new draft. ``None`` when there is nothing to prepare."""
    incident = Incident.objects.get(pk=incident.pk)
    if incident.status not in (Status.RESOLVED, Status.CLOSED):
        return None
    updates = StatusUpdate.objects.filter(incident=incident)
    told = updates.filter(state=UpdateState.PUBLISHED).exists()
    if not (told or incident.customer_facing):
        return None
    pending = (
        updates.filter(kind=UpdateKind.RESTORATION)
        .exclude(state=UpdateState.PUBLISHED)
        .order_by("-pk")
        .first()
    )
    if pending is not None:
        return pending
    if (
        incident.resolved_at is not None
        and updates.filter(
            public_status=UpdateStatus.RESOLVED,
            state=UpdateState.PUBLISHED,
            published_at__gte=incident.resolved_at,
        ).exists()
    ):
        # The lead published a "resolved" update of this resolution before this handler ran
        # (a worker backlog): customers have been told.
        return None
    components = restoration_components(incident)
    title = (
        f"Resolved: {_names([component.name for component in components])}"
        if components
        else "Service restored"
    )
    return status_update_create(
        incident=incident,
        actor=None,
        source="system",
        kind=UpdateKind.RESTORATION,
        public_title=title[:TITLE_MAX],
        public_status=UpdateStatus.RESOLVED,
        body=restoration_body(incident=incident, components=components),
        components=[(component, ComponentStatus.OPERATIONAL) for component in components],
    )
