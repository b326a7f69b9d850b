"""The text of a stakeholder message: what was written for the group (its latest note, the
latest published status update), framed by what the group's row asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings

from incidents.models import Incident, Status

from ...models import (
    ContentKind,
    SendKind,
    StakeholderGroup,
    StakeholderNote,
    StatusUpdate,
    UpdateState,
)
from .common import _hhmm

CONTENT_HEADINGS = {
    ContentKind.STATUS_ETA: "Status and ETA",
    ContentKind.IMPACT: "Impact assessment",
    ContentKind.TALKING_POINTS: "Talking points",
    ContentKind.SERVICE_IMPACT: "Service impact",
}


@dataclass(frozen=True)
class _Content:
    note: StakeholderNote | None
    update: StatusUpdate | None
    new: bool


def _content(*, incident: Incident, group: StakeholderGroup, since: datetime | None) -> _Content:
    """The latest note for the group and the latest published update, and whether either is
    newer than ``since`` (None: anything written counts)."""
    note = (
        StakeholderNote.objects.filter(incident=incident, group=group)
        .select_related("author")
        .order_by("-created_at", "-pk")
        .first()
    )
    update = (
        StatusUpdate.objects.filter(
            incident=incident, state=UpdateState.PUBLISHED, published_at__isnull=False
        )
        .order_by("-published_at", "-pk")
        .first()
    )
    times = [t for t in (note and note.created_at, update and update.published_at) if t]
    new = bool(times) and (since is None or max(times) > since)
    return _Content(note=note, update=update, new=new)


def _services(incident: Incident) -> str:
    names = [s.public_name or s.name for s in incident.services.all()]
    return ", ".join(names) if names else "none recorded"


def _facts(incident: Incident, group: StakeholderGroup, zone: ZoneInfo) -> list[str]:
    """The lines the group's content kind asks for, from the incident's record."""
    severity = incident.severity
    lines = [
        f"Incident: {incident.number} {incident.title}",
        f"Severity: Sev {severity.level} ({severity.name}) · Status: "
        f"{Status(incident.status).label}",
    ]
    if group.content == ContentKind.STATUS_ETA:
        lines.append(f"Logged at: {_hhmm(incident.detected_at, zone)}")
        if incident.is_active:
            lines.append(
                f"Resolution target (Sev {severity.level}): "
                f"{_hhmm(incident.resolution_due_at, zone)}"
            )
    elif group.content in (ContentKind.IMPACT, ContentKind.SERVICE_IMPACT):
        lines.append(f"Affected services: {_services(incident)}")
        lines.append(f"Customer-facing: {'yes' if incident.customer_facing else 'no'}")
        if incident.affected_users is not None:
            lines.append(f"Estimated affected users: {incident.affected_users}")
        if group.content == ContentKind.IMPACT and incident.business_impact:
            lines.append(f"Business impact: {incident.business_impact}")
    elif group.content == ContentKind.TALKING_POINTS:
        lines.append(f"Affected services: {_services(incident)}")
    return lines


def _written(content: _Content, group: StakeholderGroup, zone: ZoneInfo) -> list[str]:
    heading = CONTENT_HEADINGS.get(group.content, "Update")
    lines: list[str] = []
    note, update = content.note, content.update
    if note is not None:
        lines += ["", f"{heading} (written {_hhmm(note.created_at, zone)}):", note.body.strip()]
    if update is not None and (note is None or update.published_at > note.created_at):
        lines += [
            "",
            f"Latest public status update ({_hhmm(update.published_at, zone)}, "
            f"{update.get_public_status_display()}): {update.public_title}",
            update.body.strip(),
        ]
    elif update is not None:
        lines += [
            "",
            f"Status page: {update.public_title} ({update.get_public_status_display()}, "
            f"{_hhmm(update.published_at, zone)})",
        ]
    if not lines:
        lines = ["", f"{heading}: nothing has been written yet; the incident's record says:"]
    return lines


def _compose(
    *,
    incident: Incident,
    group: StakeholderGroup,
    kind: str,
    content: _Content,
    zone: ZoneInfo,
    due_at: datetime,
    now: datetime,
    late: bool,
    next_due: datetime | None,
    unchanged_since: datetime | None,
) -> tuple[str, str]:
    heading = CONTENT_HEADINGS.get(group.content, "Update")
    if kind == SendKind.FINAL:
        ended = Status(incident.status).label.lower()
        subject = f"{incident.number}: {ended} – final update for {group.name}"
        lines = [f"{incident.number} was {ended} at {_hhmm(due_at, zone)}."]
        lines += _facts(incident, group, zone)
        if incident.status == Status.CANCELLED and incident.cancel_reason:
            lines.append(f"Reason: {incident.cancel_reason}")
        if incident.resolution:
            lines.append(f"Resolution: {incident.resolution}")
        if content.note is not None or content.update is not None:
            lines += _written(content, group, zone)
        lines += ["", "This is the last update of the schedule for this incident."]
    elif kind == SendKind.NO_CHANGE:
        since = _hhmm(unchanged_since or due_at, zone)
        subject = f"{incident.number}: no change since {since} – {group.name}"
        lines = [
            f"No change since {since}"
            + (f", next update at {_hhmm(next_due, zone)}." if next_due else ".")
        ]
        lines += _facts(incident, group, zone)
    else:
        subject = f"{incident.number}: {heading} for {group.name}"
        lines = [f"{heading} – {incident.number} {incident.title}"]
        lines += _facts(incident, group, zone)[1:]
        lines += _written(content, group, zone)
        if next_due is not None:
            lines += ["", f"Next update at {_hhmm(next_due, zone)}."]
    if late:
        lines += [
            "",
            f"This update is late: it was due at {_hhmm(due_at, zone)} and is sent at "
            f"{_hhmm(now, zone)}.",
        ]
    lines += ["", f"Incident page: {settings.VIGIL_BASE_URL}{incident.get_absolute_url()}"]
    return subject, "\n".join(lines) + "\n"
