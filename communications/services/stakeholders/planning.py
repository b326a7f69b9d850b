"""Planning and stopping an incident's stakeholder schedules (the incident handler calls
:func:`stakeholder_schedules_sync` and :func:`stakeholder_schedules_stop`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from incidents.models import Channel, Incident, Kind, Source, Status
from incidents.services.common import timeline_record

from ...models import SendKind, StakeholderSchedule
from ..policy import communication_policy_get, stakeholder_groups_active, status_time_zone
from .common import StakeholderAction, _every, _hhmm
from .compose import _content
from .sending import _deliver


def _plan(schedule: StakeholderSchedule, *, due: datetime | None, lead: int) -> None:
    """Set the next due time and the check before it (the reminder point, unless the lead was
    already reminded for that due time)."""
    schedule.next_due_at = due
    if due is None:
        schedule.reminder_at = None
        schedule.next_check_at = None
        return
    floor = schedule.last_sent_at or schedule.started_at
    schedule.reminder_at = max(due - timedelta(minutes=lead), floor) if lead else None
    if (
        schedule.reminder_at is not None
        and schedule.reminder_at < due
        and schedule.reminded_for != due
    ):
        schedule.next_check_at = schedule.reminder_at
    else:
        schedule.next_check_at = due


@transaction.atomic(savepoint=False)
def stakeholder_schedules_sync(
    *, incident: Incident, at: datetime | None = None
) -> list[StakeholderSchedule]:
    """Bring the schedules of an active incident in line with its severity and the active
    groups, as of ``at`` (the event's time; default now):

    * a group with an interval for the severity and no schedule gets one, first due one interval
      after ``at`` (the incident's creation, or the severity change that gave it an interval);
    * a stopped schedule (the incident was reopened) starts again, due one interval after ``at``;
    * a running schedule whose interval changed is re-planned: one interval after its last
      update (not before ``at``); without an interval for the new severity it pauses.

    Writes one timeline entry saying what changed. Idempotent: a second call changes nothing.
    Returns the schedules started or re-planned. An incident that is not active: nothing.
    ``incident``: as read for the event being followed (with its severity). Part of the
    caller's transaction, without a savepoint of its own."""
    if not incident.is_active:
        return []
    at = at or timezone.now()
    severity = incident.severity_id
    groups = stakeholder_groups_active()
    existing = {
        s.group_id: s
        for s in StakeholderSchedule.objects.select_for_update().filter(incident=incident)
    }
    if not existing and not any(g.interval_for(severity) for g in groups):
        return []  # most incidents (Sev 3-4): three queries and nothing to plan
    lead = communication_policy_get().stakeholder_reminder_lead_minutes
    zone = status_time_zone()
    changed: list[StakeholderSchedule] = []
    # Written together below. The incident's schedules are locked and its events are followed
    # one at a time, so no other writer adds one meanwhile: no savepoint per row.
    new: list[StakeholderSchedule] = []
    lines: list[str] = []
    for group in groups:
        minutes = group.interval_for(severity)
        schedule = existing.get(group.pk)
        if schedule is None:
            if minutes is None:
                continue
            schedule = StakeholderSchedule(
                incident=incident, group=group, interval_minutes=minutes, started_at=at
            )
            _plan(schedule, due=at + timedelta(minutes=minutes), lead=lead)
            new.append(schedule)
        elif schedule.stopped_at is not None:
            schedule.stopped_at = None
            schedule.interval_minutes = minutes
            schedule.reminded_for = None
            _plan(schedule, due=at + timedelta(minutes=minutes) if minutes else None, lead=lead)
            schedule.save()
            if minutes is None:
                continue
        elif schedule.interval_minutes != minutes:
            previous = schedule.interval_minutes
            schedule.interval_minutes = minutes
            if minutes is None:
                due = None
            elif previous is None:
                due = at + timedelta(minutes=minutes)
            else:
                base = schedule.last_sent_at or schedule.started_at
                due = max(base + timedelta(minutes=minutes), at)
            _plan(schedule, due=due, lead=lead)
            schedule.save()
            if minutes is None:
                lines.append(f"{group.name}: no scheduled updates at Sev {severity}")
                changed.append(schedule)
                continue
        else:
            continue
        changed.append(schedule)
        lines.append(
            f"{group.name} {_every(minutes)} by {Channel(group.channel).label.lower()}, "
            f"next at {_hhmm(schedule.next_due_at, zone)}"
        )
    if new:
        StakeholderSchedule.objects.bulk_create(new)
    if lines:
        timeline_record(
            incident=incident,
            kind=Kind.COMMUNICATION,
            source=Source.SYSTEM,
            actor=None,
            message=f"Stakeholder update schedule (Sev {severity}): " + "; ".join(lines) + ".",
            data={"stakeholder": "schedule", "groups": [s.group_id for s in changed]},
        )
    return changed


def _ended_at(incident: Incident) -> datetime:
    if incident.status == Status.CANCELLED and incident.cancelled_at:
        return incident.cancelled_at
    if incident.resolved_at:
        return incident.resolved_at
    return incident.closed_at or timezone.now()


@transaction.atomic
def stakeholder_schedules_stop(*, incident: Incident) -> list[StakeholderAction]:
    """The incident was resolved, closed or cancelled: stop each of its schedules and send each
    group that was on a schedule, or had been sent an update on demand, its final message (a
    cancelled incident: only the groups already told something). Idempotent: a stopped schedule
    is left alone, and the final message is keyed by the time the incident ended, so it goes
    once. An incident that is active again (reopened before this ran): nothing."""
    incident = Incident.objects.select_related("severity").get(pk=incident.pk)
    if incident.is_active:
        return []
    ended = _ended_at(incident)
    now = timezone.now()
    zone = status_time_zone()
    done: list[StakeholderAction] = []
    schedules = (
        StakeholderSchedule.objects.select_for_update(of=("self",))
        .select_related("group")
        .filter(incident=incident, stopped_at__isnull=True)
        .order_by("group__position", "group__name")
    )
    for schedule in schedules:
        group = schedule.group
        told = schedule.last_sent_at is not None
        scheduled = schedule.interval_minutes is not None
        schedule.stopped_at = ended
        _plan(schedule, due=None, lead=0)
        final = group.active and (
            told if incident.status == Status.CANCELLED else told or scheduled
        )
        if final:
            content = _content(incident=incident, group=group, since=schedule.last_sent_at)
            send = _deliver(
                schedule=schedule,
                incident=incident,
                group=group,
                kind=SendKind.FINAL,
                due_at=ended,
                now=now,
                zone=zone,
                content=content,
                next_due=None,
            )
            if send is not None:
                done.append(
                    StakeholderAction(
                        incident=incident.number,
                        group=group.name,
                        kind=SendKind.FINAL,
                        due_at=ended,
                        recipients=send.recipients,
                    )
                )
        schedule.save()
    return done
