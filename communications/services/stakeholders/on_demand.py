"""What staff do by hand: write a note for a group's next update, or send a group an update
now.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.models import Incident, Kind, Status
from incidents.services.common import timeline_record

from ...errors import require
from ...models import (
    SendKind,
    StakeholderGroup,
    StakeholderNote,
    StakeholderSchedule,
    StakeholderSend,
)
from ..policy import status_time_zone
from .common import NOTE_MAX, NOTE_PERMISSION, SEND_PERMISSION, _hhmm
from .compose import _content
from .sending import _deliver


def _writable(incident: Incident, group: StakeholderGroup, what: str) -> Incident:
    incident = Incident.objects.select_related("severity").get(pk=incident.pk)
    if not incident.is_active:
        raise InvalidInput(
            {
                "incident": f"{incident.number} is {Status(incident.status).label.lower()}: its "
                f"stakeholder updates have ended, so there is no {what} to make."
            }
        )
    if not group.active:
        raise InvalidInput({"group": f"The {group.name} stakeholder group is not active."})
    return incident


@transaction.atomic
def stakeholder_note_write(
    *, incident: Incident, group: StakeholderGroup, body: str, actor: Any, source: str
) -> StakeholderNote:
    """Write an internal note for ``group`` on an active incident: what its next update says.
    The next scheduled (or on-demand) update of the group is composed from it, and the
    communications lead is not reminded for that update. Needs the note permission (the
    communications lead and incident managers). Writes a timeline entry. Not idempotent: each
    call adds a note (the latest counts)."""
    require(actor, NOTE_PERMISSION, "write stakeholder notes")
    body = (body or "").strip()
    if not body:
        raise InvalidInput({"body": "Write what the group's next update should say."})
    if len(body) > NOTE_MAX:
        raise InvalidInput({"body": f"At most {NOTE_MAX} characters (this is {len(body)})."})
    incident = _writable(incident, group, "note")
    note = StakeholderNote.objects.create(incident=incident, group=group, body=body, author=actor)
    timeline_record(
        incident=incident,
        kind=Kind.COMMUNICATION,
        source=source,
        actor=actor,
        message=f"Note written for the {group.name} stakeholder update.",
        data={"stakeholder": "note", "group": group.pk, "note": note.pk},
    )
    return note


@transaction.atomic
def stakeholder_send_now(
    *, incident: Incident, group: StakeholderGroup, actor: Any, source: str
) -> StakeholderSend:
    """Send ``group`` an update now (the "as needed" rows such as Partners, or any group ahead
    of its schedule), composed from the latest note written for it or the latest published
    update. Refused (400) when nothing new was written since the group's last update: a second
    click sends nothing twice. A scheduled group keeps its cadence; its next update says "no
    change" unless something new is written. Needs the send permission. Writes a timeline
    entry; the group then gets a final message when the incident ends."""
    require(actor, SEND_PERMISSION, "send stakeholder updates")
    incident = _writable(incident, group, "update")
    now = timezone.now()
    zone = status_time_zone()
    schedule = (
        StakeholderSchedule.objects.select_for_update()
        .filter(incident=incident, group=group)
        .first()
    )
    if schedule is None:
        schedule = StakeholderSchedule(
            incident=incident, group=group, interval_minutes=None, started_at=now
        )
        try:
            with transaction.atomic():
                schedule.save(force_insert=True)
        except IntegrityError:
            schedule = StakeholderSchedule.objects.select_for_update().get(
                incident=incident, group=group
            )
    content = _content(incident=incident, group=group, since=schedule.last_sent_at)
    if not content.new:
        if schedule.last_sent_at is None:
            why = (
                f"Nothing has been written for {group.name} yet: write a note for the group "
                "(or publish a status update) first."
            )
        else:
            why = (
                f"Nothing new since {group.name}'s last update at "
                f"{_hhmm(schedule.last_sent_at, zone)}: write a note for the group first."
            )
        raise InvalidInput({"group": why})
    send = _deliver(
        schedule=schedule,
        incident=incident,
        group=group,
        kind=SendKind.ON_DEMAND,
        due_at=now,
        now=now,
        zone=zone,
        content=content,
        next_due=schedule.next_due_at if schedule.interval_minutes else None,
        actor=actor,
        source=source,
    )
    if send is None:
        raise InvalidInput({"group": f"An update was just sent to {group.name}."})
    schedule.save()
    return send
