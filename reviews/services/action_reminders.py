"""Reminding the owners of action items (:func:`action_item_reminder_sweep`, beat): to the owner,
by email through the outbox, at the start of the working day (the review policy's
``workday_start`` in its time zone): ``before`` ``action_reminder_days`` before the due date
(none when 0), ``due`` on the due date, ``overdue`` the day after it, then ``overdue-2``,
``overdue-3``... every 7 days while the item is open or in progress. Each is sent at most once
per due date: its name is kept in ``reminders_sent`` on the claimed row and the outbox key names
the item, its due date and the reminder. A sweep that runs late sends only the latest reminder
passed. Moving the due date starts the reminders afresh for the new date (the schedule is
:func:`~reviews.services.actions.reminder_schedule`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.models import Channel, Contact, channel_address
from incidents.services.common import audited_save
from incidents.timeformat import when as when_text

from ..models import ActionItem, ReviewPolicy
from .actions import ACTIVE, owner_name, pending, reminder_policy

logger = logging.getLogger(__name__)

KEY_PREFIX = "reviews:action-reminder"


def _address(user: Any) -> tuple[str, Contact | None]:
    contact = Contact.objects.filter(user=user).order_by("pk").first()
    email = user.email or (contact.email if contact is not None else "")
    return channel_address(Channel.EMAIL, email=email), contact


def _reminder_text(item: ActionItem, name: str, today: date) -> tuple[str, str]:
    incident = item.incident
    days = (item.due_date - today).days
    if name == "before":
        when = f"is due in {days} day{'s' if days != 1 else ''}, on {when_text(item.due_date)}"
        subject = f"[{incident.number}] Action item due {when_text(item.due_date)}: {item.title}"
    elif name == "due":
        when = f"is due today, {when_text(item.due_date)}"
        subject = f"[{incident.number}] Action item due today: {item.title}"
    else:
        late = -days
        when = (
            f"is overdue: it was due on {when_text(item.due_date)}, "
            f"{late} day{'s' if late != 1 else ''} ago"
        )
        subject = f"[{incident.number}] Overdue action item: {item.title}"
    link = f"{settings.VIGIL_BASE_URL}{reverse('admin:reviews_actionitem_change', args=[item.pk])}"
    body = (
        f"Hello {owner_name(item.owner)},\n\n"
        f"The action item you own {when}.\n\n"
        f"  {item.title}\n"
        f"  Kind: {item.get_kind_display()}; priority: {item.get_priority_display()}; "
        f"status: {item.get_status_display()}\n"
        f"  Incident: {incident.number} – {incident.title}\n"
        + (f"  Tracker: {item.tracker_url}\n" if item.tracker_url else "")
        + f"\nMark it done (or won't do, with a reason) in Vigil:\n{link}\n"
    )
    return subject, body


@dataclass(frozen=True)
class ReminderSent:
    item: int
    reminder: str
    notification: int | None


def _remind_one(*, item_id: int, now: datetime, policy: ReviewPolicy) -> ReminderSent | None:
    """Handle one due item in the caller's transaction; an item another sweep holds is
    skipped (it stays due)."""
    item = (
        ActionItem.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("incident", "owner")
        .filter(pk=item_id, next_reminder_at__lte=now)
        .first()
    )
    if item is None:
        return None
    if item.status not in ACTIVE:
        item.next_reminder_at = None
        audited_save(
            item, actor=None, reason="Reminders stopped", update_fields=["next_reminder_at"]
        )
        return None
    passed: tuple[str, datetime] | None = None
    upcoming: datetime | None = None
    for name, at in pending(item, policy):
        if at <= now:
            passed = (name, at)
        else:
            upcoming = at
            break
    result = None
    if passed is not None:
        name = passed[0]
        address, contact = _address(item.owner)
        notification_id = None
        if address:
            subject, body = _reminder_text(item, name, timezone.localtime(now).date())
            notification = notification_enqueue(
                incident=item.incident,
                channel=Channel.EMAIL,
                recipient=address,
                subject=subject,
                body=body,
                template="reviews/action_item_reminder",
                reason=f"Action item reminder ({name})",
                idempotency_key=f"{KEY_PREFIX}:{item.pk}:{item.due_date.isoformat()}:{name}",
                contact=contact,
                context={"kind": "action_item", "reminder": name, "action_item": item.pk},
            )
            notification_id = notification.pk
        else:
            logger.warning("Action item %s: its owner has no email address (%s)", item.pk, name)
        item.reminders_sent = [*(item.reminders_sent or []), name]
        result = ReminderSent(item=item.pk, reminder=name, notification=notification_id)
    item.next_reminder_at = upcoming
    audited_save(
        item,
        actor=None,
        reason=f"Reminder sent: {passed[0]}" if passed else "Reminder rescheduled",
        update_fields=["reminders_sent", "next_reminder_at"],
    )
    return result


def action_item_reminder_sweep(
    *, now: datetime | None = None, batch: int = 50, time_budget: float | None = None
) -> list[ReminderSent]:
    """Send the owners the reminders due by ``now`` (beat). Never inside a transaction: each
    item is claimed (SKIP LOCKED) and handled in a transaction of its own, so two sweeps at the
    same moment send each reminder once. Reads due items by ``next_reminder_at`` (indexed),
    keyset-paginated; an item that fails is logged and left due for the next sweep."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    policy = reminder_policy()
    done: list[ReminderSent] = []
    after = 0
    while True:
        ids = list(
            ActionItem.objects.filter(status__in=ACTIVE, next_reminder_at__lte=now, pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        for pk in ids:
            if deadline is not None and time.monotonic() > deadline:
                logger.warning("Action item reminder sweep out of time; the rest is for the next")
                return done
            try:
                with transaction.atomic():
                    sent = _remind_one(item_id=pk, now=now, policy=policy)
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.exception("Action item %s reminder failed; left for the next sweep", pk)
                continue
            if sent is not None:
                done.append(sent)
        if len(ids) < batch:
            break
        after = ids[-1]
    return done
