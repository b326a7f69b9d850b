"""Enterprise direct contact (§5.2 "Direct contact for enterprise customers with SLA
commitments"): a task for a human to reach each such customer affected by a Sev 1-2 incident.

* **When.** An incident needs direct contact while it is active, **customer-facing** and of a
  severity in the policy's ``direct_contact_severities`` (seeded [1, 2]). Customer-facing is
  required: an internal incident affects no customer, and the same rule decides whether the
  customers' contacts are emailed, so a customer hears from a person exactly when it is told
  by mail. An **affected** customer is one that uses at least one of the incident's services;
  it gets a task when its plan is enterprise and it has SLA commitments
  (:attr:`Customer.needs_direct_contact`).
* **Created** by the ``communications.direct_contact`` handler of the incident's events
  (created, severity changed, updated services or customer-facing flag, reopened), so a
  severity raised to 2 or a service added later creates the missing tasks. One task per
  incident and customer (a unique constraint; the incident row is locked while they are made),
  never removed: a lowered severity or a service taken off leaves the tasks there (someone may
  already have called).
* **Owner**: the customer's account owner; a customer without one (or whose owner is no longer
  active) is given to the incident manager assigned on the incident, and when nobody is, the
  task has no owner: the panel flags it, assigning an incident manager later hands it to them,
  and until then its reminders go to the Incident Manager role's primary contact.
* **Due** ``direct_contact_due_minutes`` after it is created. The owner gets an e-mail when it
  is assigned and a reminder every ``direct_contact_reminder_minutes`` until it is closed,
  through the outbox (``escalation.outbox.notification_enqueue``), keyed per task and reminder
  number, sent by the beat sweep (:func:`direct_contact_sweep`, tasks claimed with ``FOR UPDATE
  SKIP LOCKED``). A sweep that runs late sends one reminder, not one per missed interval. A
  cancelled incident's open tasks are no longer reminded.
* **Closed** as *done* (the customer was reached; a note is optional) or *not reachable* (a note
  saying what was tried is required), by the owner, or by anyone holding
  ``communications.change_directcontacttask`` (the incident manager and the communications
  lead). Closing a closed task is refused (409). Created and closed tasks are on the timeline.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.errors import InvalidInput, TransitionNotAllowed, VigilError
from incidents.models import Channel, Contact, Incident, Kind, ResponseRole, Source, Status
from incidents.services.common import audited_save, timeline_record
from incidents.timeformat import time_text

from ..errors import NotPermitted
from ..models import (
    CommunicationPolicy,
    Customer,
    CustomerPlan,
    DirectContactStatus,
    DirectContactTask,
)
from .policy import communication_policy_get

logger = logging.getLogger(__name__)

__all__ = [
    "CLOSE_PERMISSION",
    "DirectContactClosed",
    "direct_contact_close",
    "direct_contact_may_close",
    "direct_contact_sweep",
    "direct_contact_tasks_assign_unowned",
    "direct_contact_tasks_create",
]

KEY_PREFIX = "comms-direct-contact"
CLOSE_PERMISSION = "communications.change_directcontacttask"
NOTE_MAX_LENGTH = 2000
OUTCOMES = {
    "done": DirectContactStatus.DONE,
    "not_reachable": DirectContactStatus.NOT_REACHABLE,
}


class DirectContactClosed(TransitionNotAllowed):
    """The task is already closed (409)."""

    def __init__(self, task: DirectContactTask) -> None:
        self.action, self.status, self.allowed = "close", task.status, []
        VigilError.__init__(
            self,
            f"The direct-contact task for {task.customer} is already closed "
            f"({task.get_status_display().lower()}).",
        )


def _local(value: datetime) -> str:
    return time_text(value)


def _name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "nobody"


def _incident_manager(incident: Incident) -> Any:
    assignment = (
        incident.role_assignments.select_related("user")
        .filter(role__key=ResponseRole.INCIDENT_MANAGER, user__is_active=True)
        .first()
    )
    return assignment.user if assignment is not None else None


def _needs_direct_contact(incident: Incident, policy: CommunicationPolicy) -> bool:
    severities = {int(s) for s in policy.direct_contact_severities or []}
    return incident.is_active and incident.customer_facing and incident.severity_id in severities


def _affected(incident: Incident):
    return (
        Customer.objects.filter(
            plan=CustomerPlan.ENTERPRISE,
            has_sla=True,
            services__in=incident.services.values("pk"),
        )
        .distinct()
        .select_related("account_owner")
        .order_by("name", "pk")
    )


# --- notifying the owner -----------------------------------------------------------------------


def _recipient(task: DirectContactTask) -> tuple[str, Contact | None, str]:
    """(e-mail address, contact, name) of whom to tell about the task: its owner, else the
    incident manager on the incident, else the Incident Manager role's primary contact."""
    user = task.owner or _incident_manager(task.incident)
    if user is not None:
        contact = Contact.objects.filter(user=user).order_by("pk").first()
        address = user.email or (contact.email if contact is not None else "")
        return address, contact, _name(user)
    role = (
        ResponseRole.objects.select_related("primary_contact")
        .filter(key=ResponseRole.INCIDENT_MANAGER)
        .first()
    )
    if role is not None and role.primary_contact is not None:
        contact = role.primary_contact
        return contact.email, contact, contact.name
    return "", None, ""


def _notify(*, task: DirectContactTask, point: str, now: datetime) -> int | None:
    incident, customer = task.incident, task.customer
    address, contact, name = _recipient(task)
    if not address:
        logger.warning("Direct-contact task %s: nobody to tell (%s)", task.pk, point)
        return None
    if now >= task.due_at:
        when = f"was due at {_local(task.due_at)}"
    else:
        left = max(1, int((task.due_at - now).total_seconds() // 60))
        when = f"is due by {_local(task.due_at)}, in {left} min"
    if point.startswith("assigned"):
        due = _local(task.due_at)
        subject = f"{incident.number}: contact {customer} (enterprise SLA), due {due}"
        headline = f"Please contact {customer} personally about {incident.number}."
    else:
        subject = f"Reminder: {incident.number}: contact {customer}, {when.split(',')[0]}"
        headline = f"Reminder {point}: {customer} has not been contacted about {incident.number}."
    contacts = "\n".join(
        f"- {c.name or c.email}" + (f" ({c.title})" if c.title else "") + f": {c.email}"
        f"{', ' + c.phone if c.phone else ''}"
        for c in customer.contacts.all()[:20]
    )
    body = (
        f"{headline}\n\n"
        f"Customer: {customer}\n"
        f"SLA: {task.sla_terms or 'SLA commitments'}\n"
        f"Incident: {incident.number} {incident.title} (Sev {incident.severity_id})\n"
        f"The contact {when}.\n\n"
        + (f"The customer's contacts:\n{contacts}\n\n" if contacts else "")
        + "When you have reached them (or could not), record it on the incident page:\n"
        f"{settings.VIGIL_BASE_URL}{incident.get_absolute_url()}#panel-direct-contact\n"
    )
    notification = notification_enqueue(
        incident=incident,
        channel=Channel.EMAIL,
        recipient=address,
        subject=subject,
        body=body,
        template="communications/direct_contact",
        reason=f"Direct contact with {customer}"[:200],
        idempotency_key=f"{KEY_PREFIX}:{task.pk}:{point}",
        contact=contact,
        context={
            "kind": "direct_contact",
            "point": point,
            "incident": incident.number,
            "task": task.pk,
            "recipient": name,
        },
    )
    return notification.pk


# --- creating ----------------------------------------------------------------------------------


@transaction.atomic(savepoint=False)
def direct_contact_tasks_create(*, incident: Incident) -> list[DirectContactTask]:
    """Create the missing direct-contact tasks of ``incident`` (see the module docstring for
    when and for whom), each with a timeline entry and an e-mail to its owner through the
    outbox. ``incident``: as read for the event being followed. Idempotent: the tasks are
    made with the incident row locked (and the rule checked again on it), and a task is
    unique per incident and customer, so concurrent calls create each task once. An incident
    that needs none, or affects no such customer, is decided without a lock. Returns the tasks
    created. Part of the caller's transaction, without a savepoint of its own: an error rolls
    back the caller's work too."""
    policy = communication_policy_get()
    if not _needs_direct_contact(incident, policy):
        return []
    affected = list(_affected(incident))
    if not affected:
        return []
    locked = Incident.objects.select_for_update().get(pk=incident.pk)
    if not _needs_direct_contact(locked, policy):
        return []
    have = set(
        DirectContactTask.objects.filter(incident=locked).values_list("customer_id", flat=True)
    )
    customers = [c for c in affected if c.pk not in have]
    if not customers:
        return []
    now = timezone.now()
    manager = _incident_manager(locked)
    created = []
    for customer in customers:
        owner = customer.account_owner
        if owner is not None and not owner.is_active:
            owner = None
        via = "account owner" if owner is not None else ""
        if owner is None and manager is not None:
            owner, via = manager, "incident manager (the customer has no active account owner)"
        task = DirectContactTask(
            incident=locked,
            customer=customer,
            owner=owner,
            sla_terms=customer.sla_terms,
            due_at=now + timedelta(minutes=policy.direct_contact_due_minutes),
            next_reminder_at=now + timedelta(minutes=policy.direct_contact_reminder_minutes),
        )
        try:
            with transaction.atomic():
                audited_save(task, actor=None, reason=f"Sev {locked.severity_id} incident")
        except IntegrityError:
            continue
        who = (
            f"assigned to {_name(owner)} ({via})"
            if owner is not None
            else "NOT ASSIGNED: the customer has no account owner and the incident no "
            "incident manager"
        )
        sla = f" (SLA: {task.sla_terms})" if task.sla_terms else ""
        timeline_record(
            incident=locked,
            kind=Kind.COMMUNICATION,
            source=Source.SYSTEM,
            actor=None,
            message=(
                f"Direct contact needed with enterprise customer {customer}{sla}: "
                f"{who}, due by {_local(task.due_at)}."
            ),
            data={
                "direct_contact": task.pk,
                "customer": customer.pk,
                "owner": owner.pk if owner is not None else None,
                "due_at": task.due_at.isoformat(),
                "status": "created",
            },
        )
        _notify(task=task, point="assigned", now=now)
        created.append(task)
    return created


@transaction.atomic
def direct_contact_tasks_assign_unowned(*, incident: Incident) -> list[DirectContactTask]:
    """Give the open tasks of ``incident`` that have no owner to its incident manager (called
    when the role is assigned), with a timeline entry and an e-mail each. Idempotent."""
    manager = _incident_manager(incident)
    if manager is None:
        return []
    tasks = list(
        DirectContactTask.objects.select_for_update()
        .filter(incident_id=incident.pk, owner__isnull=True, status=DirectContactStatus.OPEN)
        .select_related("incident", "customer")
        .order_by("pk")
    )
    now = timezone.now()
    for task in tasks:
        task.owner = manager
        audited_save(task, actor=None, reason="given to the incident manager")
        timeline_record(
            incident=task.incident,
            kind=Kind.COMMUNICATION,
            source=Source.SYSTEM,
            actor=None,
            message=f"Direct contact with {task.customer} assigned to {_name(manager)} "
            "(incident manager).",
            data={"direct_contact": task.pk, "owner": manager.pk, "status": "assigned"},
        )
        _notify(task=task, point=f"assigned-{manager.pk}", now=now)
    return tasks


# --- closing -----------------------------------------------------------------------------------


def direct_contact_may_close(*, task: DirectContactTask, user: Any) -> bool:
    """Whether ``user`` may close ``task``: its owner, or a holder of the close permission."""
    if user is None:
        return True
    if not (user.is_active and user.is_authenticated):
        return False
    return task.owner_id == user.pk or user.has_perm(CLOSE_PERMISSION)


@transaction.atomic
def direct_contact_close(
    *, task: DirectContactTask, actor: Any, source: str, outcome: str, note: str = ""
) -> DirectContactTask:
    """Close a task as ``done`` or ``not_reachable`` with a note (required when not
    reachable), by its owner or a holder of ``communications.change_directcontacttask``.
    Stops its reminders; writes a timeline entry. Refusals change nothing: 403 for someone
    else, 400 for a missing or oversized note, 409 when the task is already closed (closing is
    not repeated, so two people cannot both record an outcome)."""
    status = OUTCOMES.get(outcome)
    if status is None:
        raise InvalidInput({"outcome": f"One of: {', '.join(OUTCOMES)}."})
    note = (note or "").strip() if isinstance(note, str) else None
    if note is None:
        raise InvalidInput({"note": "Expected text."})
    if len(note) > NOTE_MAX_LENGTH:
        raise InvalidInput({"note": f"At most {NOTE_MAX_LENGTH} characters."})
    if "\x00" in note:
        raise InvalidInput({"note": "Null characters are not allowed."})
    if status == DirectContactStatus.NOT_REACHABLE and not note:
        raise InvalidInput({"note": "Say what was tried when the customer was not reachable."})
    locked = (
        DirectContactTask.objects.select_for_update(of=("self",))
        .select_related("incident", "customer", "owner")
        .get(pk=task.pk)
    )
    if not direct_contact_may_close(task=locked, user=actor):
        raise NotPermitted(
            action=f"close the direct-contact task for {locked.customer}", user=actor
        )
    if locked.status != DirectContactStatus.OPEN:
        raise DirectContactClosed(locked)
    now = timezone.now()
    locked.status = status
    locked.note = note
    locked.closed_by = actor
    locked.closed_at = now
    locked.next_reminder_at = None
    audited_save(locked, actor=actor, reason=f"{outcome} ({source})")
    late = now > locked.due_at
    if status == DirectContactStatus.DONE:
        what = f"Direct contact with {locked.customer} made"
    else:
        what = f"Direct contact with {locked.customer}: not reachable"
    message = f"{what}, by {_name(actor) if actor else 'Vigil'} at {_local(now)}"
    if late:
        message += f" ({int((now - locked.due_at).total_seconds() // 60)} min after the due time)"
    message += "."
    if note:
        message += f" Note: {note}"
    timeline_record(
        incident=locked.incident,
        kind=Kind.COMMUNICATION,
        source=source,
        actor=actor,
        message=message,
        data={
            "direct_contact": locked.pk,
            "customer": locked.customer_id,
            "status": status,
            "late": late,
        },
    )
    return locked


# --- reminding ---------------------------------------------------------------------------------


def _remind_one(*, task_id: int, now: datetime, policy: CommunicationPolicy) -> bool:
    task = (
        DirectContactTask.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("incident", "customer", "owner")
        .filter(pk=task_id, status=DirectContactStatus.OPEN, next_reminder_at__lte=now)
        .first()
    )
    if task is None:
        return False
    if task.incident.status == Status.CANCELLED:
        task.next_reminder_at = None
        task.save(update_fields=["next_reminder_at"])
        return False
    number = task.reminders_sent + 1
    _notify(task=task, point=str(number), now=now)
    step = timedelta(minutes=max(1, policy.direct_contact_reminder_minutes))
    # Keep the cadence; a sweep that ran late skips the intervals it missed.
    missed = int((now - task.next_reminder_at) / step)
    task.next_reminder_at = task.next_reminder_at + step * (missed + 1)
    task.reminders_sent = number
    task.save(update_fields=["next_reminder_at", "reminders_sent"])
    return True


def direct_contact_sweep(
    *, now: datetime | None = None, batch: int = 50, time_budget: float | None = None
) -> int:
    """Remind the owners of open tasks whose reminder is due (beat). Never inside a
    transaction: each task is claimed (``FOR UPDATE SKIP LOCKED``) and reminded in a
    transaction of its own, its reminder number and next time saved on the locked row, so two
    sweeps at once remind once. Returns how many reminders were sent."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    policy = communication_policy_get()
    sent = 0
    after = 0
    while True:
        ids = list(
            DirectContactTask.objects.filter(
                status=DirectContactStatus.OPEN, next_reminder_at__lte=now, pk__gt=after
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        for pk in ids:
            if deadline is not None and time.monotonic() > deadline:
                logger.warning("Direct-contact sweep out of time; the rest is left for the next")
                return sent
            try:
                with transaction.atomic():
                    sent += _remind_one(task_id=pk, now=now, policy=policy)
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.exception("Direct-contact task %s failed; left for the next sweep", pk)
        if len(ids) < batch:
            break
        after = ids[-1]
    return sent
