"""The stakeholder sweep (beat): the reminders and updates of every schedule that is due."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.utils import timezone

from ...models import SendKind, StakeholderSchedule
from ..policy import communication_policy_get, status_time_zone
from .common import LATE_AFTER, StakeholderAction
from .compose import _content
from .planning import _plan
from .sending import _deliver, _remind

logger = logging.getLogger(__name__)


def _stakeholder_check(*, schedule_id: int, now: datetime) -> list[StakeholderAction]:
    """Act on one due schedule, in the caller's transaction. Claims it with SKIP LOCKED: a
    schedule someone else holds is skipped (it stays due)."""
    schedule = (
        StakeholderSchedule.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("incident", "incident__severity", "group")
        .filter(pk=schedule_id, next_check_at__lte=now, stopped_at__isnull=True)
        .first()
    )
    if schedule is None:
        return []
    incident, group = schedule.incident, schedule.group
    due = schedule.next_due_at
    if not incident.is_active or not group.active or due is None or not schedule.interval_minutes:
        # Ended (its handler sends the final message), or paused: nothing is due.
        schedule.next_check_at = None
        schedule.save(update_fields=["next_check_at"])
        return []
    lead = communication_policy_get().stakeholder_reminder_lead_minutes
    zone = status_time_zone()
    content = _content(incident=incident, group=group, since=schedule.last_sent_at)
    done: list[StakeholderAction] = []

    if now < due:
        if schedule.reminded_for != due and not content.new:
            send = _remind(schedule=schedule, incident=incident, group=group, now=now, zone=zone)
            if send is not None:
                done.append(
                    StakeholderAction(
                        incident=incident.number,
                        group=group.name,
                        kind=SendKind.REMINDER,
                        due_at=due,
                        recipients=send.recipients,
                    )
                )
        schedule.reminded_for = due
        schedule.next_check_at = due
        schedule.save(update_fields=["reminded_for", "next_check_at"])
        return done

    interval = timedelta(minutes=schedule.interval_minutes)
    late = now - due > LATE_AFTER
    next_due = due + interval
    if late or next_due <= now:
        # One catch-up, then the cadence starts again from now: never a burst of missed ones.
        next_due = now + interval
    kind = (
        SendKind.SCHEDULED if content.new or schedule.last_sent_at is None else SendKind.NO_CHANGE
    )
    send = _deliver(
        schedule=schedule,
        incident=incident,
        group=group,
        kind=kind,
        due_at=due,
        now=now,
        zone=zone,
        content=content,
        next_due=next_due,
        late=late,
    )
    if send is not None:
        done.append(
            StakeholderAction(
                incident=incident.number,
                group=group.name,
                kind=kind,
                due_at=due,
                late=late,
                recipients=send.recipients,
            )
        )
    _plan(schedule, due=next_due, lead=lead)
    schedule.save()
    return done


def stakeholder_sweep(
    *, now: datetime | None = None, batch: int = 50, time_budget: float | None = None
) -> list[StakeholderAction]:
    """Send the reminders and updates of every schedule due by ``now`` (beat). Never inside a
    transaction: each schedule is claimed and handled in a transaction of its own.

    Reads due schedule ids by ``next_check_at`` (indexed) in batches, keyset-paginated (a
    schedule skipped because another sweep holds it stays due). A schedule that fails is logged
    and left due for the next sweep. Safe to run any number of times, concurrently."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    done: list[StakeholderAction] = []
    after = 0
    while True:
        ids = list(
            StakeholderSchedule.objects.filter(
                next_check_at__lte=now, stopped_at__isnull=True, pk__gt=after
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        for pk in ids:
            if deadline is not None and time.monotonic() > deadline:
                logger.warning("Stakeholder sweep out of time; the rest is left for the next")
                return done
            try:
                with transaction.atomic():
                    done.extend(_stakeholder_check(schedule_id=pk, now=now))
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.exception("Stakeholder schedule %s failed; left for the next sweep", pk)
        if len(ids) < batch:
            break
        after = ids[-1]
    return done
