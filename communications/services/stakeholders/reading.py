"""Reading an incident's stakeholder schedule (the incident page and the API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from incidents.models import Incident

from ...models import SendKind, StakeholderGroup, StakeholderSchedule, StakeholderSend
from .common import LATE_AFTER, _every


@dataclass(frozen=True)
class ScheduleRow:
    """One group's line of an incident's stakeholder schedule."""

    group: StakeholderGroup
    interval_minutes: int | None
    next_due_at: datetime | None
    last_sent_at: datetime | None
    last_kind: str
    late: bool
    stopped_at: datetime | None

    @property
    def as_needed(self) -> bool:
        return self.interval_minutes is None

    @property
    def frequency(self) -> str:
        return _every(self.interval_minutes) if self.interval_minutes else "as needed"


def stakeholder_schedule_list(
    *, incident: Incident, now: datetime | None = None
) -> list[ScheduleRow]:
    """Each active group's schedule on ``incident`` (groups without one: as needed), with its
    next due time, its last send and whether it is late (the last update went out late, or the
    next is overdue by more than :data:`LATE_AFTER`). Three queries."""
    now = now or timezone.now()
    schedules = {s.group_id: s for s in StakeholderSchedule.objects.filter(incident_id=incident.pk)}
    last_sends: dict[int, StakeholderSend] = {}
    for send in (
        StakeholderSend.objects.filter(incident_id=incident.pk)
        .exclude(kind=SendKind.REMINDER)
        .order_by("-sent_at", "-pk")
    ):
        last_sends.setdefault(send.group_id, send)
    rows = []
    for group in StakeholderGroup.objects.filter(active=True).order_by("position", "name"):
        schedule = schedules.get(group.pk)
        last = last_sends.get(group.pk)
        next_due = schedule.next_due_at if schedule and not schedule.stopped_at else None
        overdue = next_due is not None and now - next_due > LATE_AFTER
        rows.append(
            ScheduleRow(
                group=group,
                interval_minutes=schedule.interval_minutes if schedule else None,
                next_due_at=next_due,
                last_sent_at=last.sent_at if last else None,
                last_kind=last.kind if last else "",
                late=overdue or bool(last and last.late),
                stopped_at=schedule.stopped_at if schedule else None,
            )
        )
    return rows
