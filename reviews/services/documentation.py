"""The 48-hour documentation rule (§4.2 step 4: "within 48 hours: complete the incident report,
document lessons learned"): the documentation clock of a resolved incident, its reminder, its
miss and its completion.

* **Complete** means the report's fields are filled: those closing requires
  (``incidents.models.CLOSE_REQUIRED_FIELDS``: summary, root cause, resolution, business impact)
  and the lessons learned, as ``incidents.models.missing_fields`` reads them.
* The clock **starts** when the incident is resolved, from its ``resolved_at``: due
  ``documentation_hours`` later, the reminder ``documentation_reminder_hours`` before that (the
  policy's values when it starts; a policy edit applies to the clocks started after it).
* **Reopened**, the incident is no longer resolved: a running clock is paused (no reminder, no
  miss). Resolved again, it restarts from the new resolution with a new due time, and its
  reminder may be sent again for that due time. A miss already recorded, or a completion, stays.
* **Completed**: an edit that fills the last field (the ``reviews.documentation`` handler of
  the incident's ``incident_updated`` event, at the edit's time) or the sweep finding it filled
  records the completion once on the timeline, met or late, and stops the clock.
* The sweep (:func:`documentation_sweep`, beat) claims due clocks by ``next_check_at``
  (indexed) with ``FOR UPDATE SKIP LOCKED``; the reminder and the miss are recorded on the locked
  row before it is released, and the reminder's outbox key is deterministic, so sweeps running
  at the same moment remind once and record the miss once.
* The reminder goes to the incident manager (the user holding the role on the incident, else
  the Incident Manager role's primary contact) by e-mail, through the outbox
  (``escalation.outbox.notification_enqueue``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.models import (
    CLOSE_REQUIRED_FIELDS,
    Channel,
    Contact,
    Incident,
    Kind,
    ResponseRole,
    Source,
    Status,
    missing_fields,
)
from incidents.services.common import timeline_record
from incidents.timeformat import when

from ..models import DocumentationClock, ReviewPolicy

logger = logging.getLogger(__name__)

__all__ = [
    "REPORT_FIELDS",
    "DocumentationAction",
    "DocumentationState",
    "documentation_clock_pause",
    "documentation_clock_start",
    "documentation_completed_check",
    "documentation_state",
    "documentation_sweep",
    "report_missing_fields",
]

# The fields of a complete report: what closing needs, and the lessons learned.
REPORT_FIELDS: tuple[str, ...] = (*CLOSE_REQUIRED_FIELDS, "lessons_learned")
KEY_PREFIX = "reviews-documentation"


def report_missing_fields(incident: Incident) -> list[str]:
    """The report fields of ``incident`` still empty (none: the report is complete)."""
    return missing_fields(incident, REPORT_FIELDS)


def _policy() -> ReviewPolicy:
    policy, _ = ReviewPolicy.objects.get_or_create(pk=1)
    return policy


def _local(value: datetime) -> str:
    return when(value)


def _hours(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{max(1, int(value.total_seconds() // 60))} min"


def _next_check(clock: DocumentationClock) -> datetime | None:
    """The reminder point if not yet sent, else the due time; None once completed or missed."""
    if clock.completed_at is not None or clock.missed_at is not None:
        return None
    if clock.reminder_at is not None and clock.reminded_at is None:
        return min(clock.reminder_at, clock.due_at)
    return clock.due_at


def _record_completed(*, clock: DocumentationClock, incident: Incident, at: datetime) -> None:
    clock.completed_at = at
    clock.next_check_at = None
    clock.save(update_fields=["completed_at", "next_check_at"])
    late = clock.missed_at is not None or at > clock.due_at
    after = _hours(max(at - clock.resolved_at, timedelta(0)))
    if late:
        message = (
            f"Incident report completed {after} after resolution, "
            f"{_hours(at - clock.due_at)} after it was due ({_local(clock.due_at)})."
        )
    else:
        message = (
            f"Incident report completed {after} after resolution: the "
            f"{_hours(clock.due_at - clock.resolved_at)} documentation rule is met."
        )
    timeline_record(
        incident=incident,
        kind=Kind.SYSTEM,
        source=Source.SYSTEM,
        actor=None,
        message=message,
        data={"documentation": "completed", "late": late, "due_at": clock.due_at.isoformat()},
    )


# --- starting, pausing, completing ----------------------------------------------------------


@transaction.atomic
def documentation_clock_start(*, incident: Incident) -> DocumentationClock | None:
    """Start (or restart, after a reopen) the documentation clock of a resolved incident.

    Due ``documentation_hours`` after ``resolved_at``; the reminder
    ``documentation_reminder_hours`` before (none when that is not after the resolution). A
    report already complete is recorded completed at once. Writes one timeline entry when the
    clock starts or restarts. Idempotent: a clock already running from this resolution, a
    completed one and a missed one are returned unchanged; an incident not resolved (or closed)
    gets none (None)."""
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status not in (Status.RESOLVED, Status.CLOSED) or incident.resolved_at is None:
        return None
    clock = DocumentationClock.objects.select_for_update().filter(incident=incident).first()
    if clock is not None and (
        clock.completed_at is not None
        or clock.missed_at is not None
        or (clock.resolved_at == incident.resolved_at and clock.next_check_at is not None)
    ):
        return clock

    policy = _policy()
    resolved_at = incident.resolved_at
    due_at = resolved_at + timedelta(hours=policy.documentation_hours)
    reminder_at = due_at - timedelta(hours=policy.documentation_reminder_hours)
    restarted = clock is not None
    if clock is None:
        clock = DocumentationClock(incident=incident)
    clock.resolved_at = resolved_at
    clock.due_at = due_at
    clock.reminder_at = (
        reminder_at if policy.documentation_reminder_hours and reminder_at > resolved_at else None
    )
    clock.reminded_at = None
    clock.next_check_at = _next_check(clock)
    try:
        with transaction.atomic():
            clock.save()
    except IntegrityError:
        # A concurrent start created the clock first.
        return DocumentationClock.objects.get(incident=incident)
    missing = report_missing_fields(incident)
    timeline_record(
        incident=incident,
        kind=Kind.SYSTEM,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"Documentation rule {'restarted' if restarted else 'started'}: the incident report "
            f"and lessons learned are due by {_local(due_at)} "
            f"({policy.documentation_hours} h after resolution)."
        ),
        data={
            "documentation": "restarted" if restarted else "started",
            "due_at": due_at.isoformat(),
            "missing": missing,
        },
    )
    if not missing:
        _record_completed(clock=clock, incident=incident, at=resolved_at)
    return clock


@transaction.atomic
def documentation_clock_pause(*, incident: Incident) -> DocumentationClock | None:
    """Pause the running clock of a reopened incident (no reminder, no miss, until it is
    resolved again). Writes one timeline entry. Idempotent: a clock not running is left alone."""
    clock = (
        DocumentationClock.objects.select_for_update()
        .filter(incident_id=incident.pk, next_check_at__isnull=False)
        .first()
    )
    if clock is None:
        return None
    incident = Incident.objects.get(pk=incident.pk)
    if incident.status in (Status.RESOLVED, Status.CLOSED):
        return clock
    clock.next_check_at = None
    clock.save(update_fields=["next_check_at"])
    timeline_record(
        incident=incident,
        kind=Kind.SYSTEM,
        source=Source.SYSTEM,
        actor=None,
        message="Documentation rule paused: the incident was reopened; it restarts when the "
        "incident is resolved again.",
        data={"documentation": "paused"},
    )
    return clock


@transaction.atomic
def documentation_completed_check(
    *, incident: Incident, at: datetime | None = None
) -> DocumentationClock | None:
    """Record the completion of the report at ``at`` (default now) if all its fields are now
    filled: once on the timeline, met or late, and the clock stops. Idempotent: an already
    completed clock, a paused one (the incident was reopened), an incomplete report and an
    incident with no clock change nothing."""
    clock = DocumentationClock.objects.select_for_update().filter(incident_id=incident.pk).first()
    if clock is None or clock.completed_at is not None:
        return clock
    incident = Incident.objects.get(pk=incident.pk)
    if incident.status not in (Status.RESOLVED, Status.CLOSED) or report_missing_fields(incident):
        return clock
    _record_completed(
        clock=clock, incident=incident, at=max(at or timezone.now(), clock.resolved_at)
    )
    return clock


# --- what the page shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentationState:
    """The incident's report completeness and documentation countdown, for the page.

    ``state``: ``none`` (not resolved yet), ``paused`` (reopened), ``due`` (running),
    ``overdue`` (missed, still incomplete), ``met`` or ``late`` (completed)."""

    state: str
    text: str
    filled: tuple[str, ...]
    missing: tuple[str, ...]
    due_at: datetime | None = None
    remaining_seconds: float | None = None


def _label(name: str) -> str:
    return str(Incident._meta.get_field(name).verbose_name).capitalize()


def documentation_state(*, incident: Incident, now: datetime | None = None) -> DocumentationState:
    """Where ``incident``'s report stands against the documentation rule (one query)."""
    now = now or timezone.now()
    missing = tuple(report_missing_fields(incident))
    filled = tuple(_label(n) for n in REPORT_FIELDS if n not in missing)
    missing_labels = tuple(_label(n) for n in missing)
    clock = DocumentationClock.objects.filter(incident_id=incident.pk).first()
    common: dict[str, Any] = {"filled": filled, "missing": missing_labels}
    if clock is None:
        return DocumentationState(
            state="none", text="Starts when the incident is resolved.", **common
        )
    common["due_at"] = clock.due_at
    if clock.completed_at is not None:
        late = clock.missed_at is not None or clock.completed_at > clock.due_at
        return DocumentationState(
            state="late" if late else "met",
            text=f"Completed {_local(clock.completed_at)}"
            + (f", late (due {_local(clock.due_at)})." if late else ", on time."),
            **common,
        )
    if clock.missed_at is not None:
        return DocumentationState(
            state="overdue",
            text=f"Overdue since {_local(clock.due_at)}: {_hours(now - clock.due_at)} late.",
            remaining_seconds=(clock.due_at - now).total_seconds(),
            **common,
        )
    if clock.next_check_at is None:
        return DocumentationState(
            state="paused", text="Paused: the incident was reopened.", **common
        )
    remaining = (clock.due_at - now).total_seconds()
    if remaining <= 0:
        text = f"Due {_local(clock.due_at)}: {_hours(now - clock.due_at)} late."
        state = "overdue"
    else:
        text = f"Due {_local(clock.due_at)}: {_hours(clock.due_at - now)} left."
        state = "due"
    return DocumentationState(state=state, text=text, remaining_seconds=remaining, **common)


# --- reminding and the miss ------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentationAction:
    """One thing a sweep did to a clock: ``reminder``, ``missed``, ``completed`` or
    ``stopped``."""

    incident: str
    action: str
    notifications: tuple[int, ...] = ()


def _incident_manager(incident: Incident) -> tuple[str, str, Contact | None]:
    """(name, e-mail, contact) of the incident manager to remind: the user holding the role on
    the incident, else the role's primary contact; ("", "", None) when there is nobody."""
    assignment = (
        incident.role_assignments.select_related("user")
        .filter(role__key=ResponseRole.INCIDENT_MANAGER, user__isnull=False)
        .first()
    )
    if assignment is not None and assignment.user.is_active:
        user = assignment.user
        contact = Contact.objects.filter(user=user).exclude(email="").order_by("pk").first()
        name = user.get_full_name() or user.get_username()
        if contact is not None:
            return name, contact.email, contact
        if user.email:
            return name, user.email, None
    role = (
        ResponseRole.objects.select_related("primary_contact")
        .filter(key=ResponseRole.INCIDENT_MANAGER)
        .first()
    )
    if role is not None and role.primary_contact is not None and role.primary_contact.email:
        return role.primary_contact.name, role.primary_contact.email, role.primary_contact
    return "", "", None


def _remind(*, clock: DocumentationClock, incident: Incident, now: datetime) -> tuple[int, ...]:
    name, email, contact = _incident_manager(incident)
    missing = report_missing_fields(incident)
    if not email:
        timeline_record(
            incident=incident,
            kind=Kind.NOTIFICATION,
            source=Source.SYSTEM,
            actor=None,
            message=(
                f"The incident report is due by {_local(clock.due_at)}; nobody was reminded: no "
                "incident manager with an e-mail address is assigned and the role's primary "
                "contact has none."
            ),
            data={"documentation": "reminder", "notifications": []},
        )
        return ()
    fields = ", ".join(_label(n) for n in missing) or "none"
    subject = (
        f"{incident.number}: the incident report is due in {_hours(clock.due_at - now)} "
        f"(by {_local(clock.due_at)})"
    )
    body = (
        f"The incident report of {incident.number} and its lessons learned are due by "
        f"{_local(clock.due_at)}, {_hours(clock.due_at - clock.resolved_at)} after resolution "
        f"(procedure §4.2 step 4).\n\n"
        f"Incident: {incident.number} {incident.title}\n"
        f"Still to fill in: {fields}\n\n"
        f"Complete it from the incident page:\n"
        f"{settings.VIGIL_BASE_URL}{incident.get_absolute_url()}\n"
    )
    notification = notification_enqueue(
        incident=incident,
        channel=Channel.EMAIL,
        recipient=email,
        subject=subject,
        body=body,
        template="reviews/documentation_reminder",
        reason="Incident report due",
        # One reminder per due time: a restarted clock (reopened, resolved again) has another.
        idempotency_key=f"{KEY_PREFIX}:{incident.pk}:{int(clock.due_at.timestamp())}:reminder",
        contact=contact,
        context={"kind": "documentation", "incident": incident.number},
    )
    timeline_record(
        incident=incident,
        kind=Kind.NOTIFICATION,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"The incident report is due by {_local(clock.due_at)}; still to fill in: {fields}. "
            f"Reminded the incident manager, {name}, by e-mail."
        ),
        data={"documentation": "reminder", "notifications": [notification.pk]},
    )
    return (notification.pk,)


def _check(*, clock_id: int, now: datetime) -> list[DocumentationAction]:
    """Act on one due clock in the caller's transaction, claimed with its incident with SKIP
    LOCKED: a clock someone else holds is skipped (it stays due)."""
    clock = (
        DocumentationClock.objects.select_for_update(skip_locked=True, of=("self", "incident"))
        .select_related("incident")
        .filter(pk=clock_id, next_check_at__lte=now)
        .first()
    )
    if clock is None:
        return []
    incident = clock.incident
    number = incident.number
    if clock.completed_at is not None or clock.missed_at is not None:
        clock.next_check_at = None
        clock.save(update_fields=["next_check_at"])
        return []
    if incident.status not in (Status.RESOLVED, Status.CLOSED):
        clock.next_check_at = None
        clock.save(update_fields=["next_check_at"])
        return [DocumentationAction(incident=number, action="stopped")]
    if not report_missing_fields(incident):
        # Filled in, and the handler of the edit has not run yet: it counts from the edit.
        at = max(clock.resolved_at, min(now, incident.updated_at))
        _record_completed(clock=clock, incident=incident, at=at)
        return [DocumentationAction(incident=number, action="completed")]

    done: list[DocumentationAction] = []
    if now >= clock.due_at:
        clock.missed_at = now
        timeline_record(
            incident=incident,
            kind=Kind.SYSTEM,
            source=Source.SYSTEM,
            actor=None,
            message=(
                f"Missed the {_hours(clock.due_at - clock.resolved_at)} documentation rule: the "
                f"incident report was not complete by {_local(clock.due_at)}; still to fill in: "
                f"{', '.join(_label(n) for n in report_missing_fields(incident))}."
            ),
            data={"documentation": "missed", "due_at": clock.due_at.isoformat()},
        )
        done.append(DocumentationAction(incident=number, action="missed"))
    elif clock.reminder_at is not None and clock.reminded_at is None and now >= clock.reminder_at:
        clock.reminded_at = now
        sent = _remind(clock=clock, incident=incident, now=now)
        done.append(DocumentationAction(incident=number, action="reminder", notifications=sent))
    clock.next_check_at = _next_check(clock)
    clock.save(update_fields=["missed_at", "reminded_at", "next_check_at"])
    return done


def documentation_sweep(
    *, now: datetime | None = None, batch: int = 20, time_budget: float | None = None
) -> list[DocumentationAction]:
    """Remind the incident managers of reports coming due and record the misses (beat). Never
    inside a transaction: each clock is claimed and handled in a transaction of its own.

    Reads due clock ids by ``next_check_at`` (indexed), keyset-paginated (a clock another sweep
    holds stays due, and re-reading from the start would spin on it). A clock that fails is
    logged and left due. Safe to run any number of times, concurrently."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    done: list[DocumentationAction] = []
    after = 0
    while True:
        ids = list(
            DocumentationClock.objects.filter(next_check_at__lte=now, pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        for pk in ids:
            if deadline is not None and time.monotonic() > deadline:
                logger.warning("Documentation sweep out of time; the rest is left for the next")
                return done
            try:
                with transaction.atomic():
                    done.extend(_check(clock_id=pk, now=now))
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.exception("Documentation clock %s failed; left for the next sweep", pk)
        if len(ids) < batch:
            break
        after = ids[-1]
    return done
