"""Booking post-incident reviews (§8.1): the review, its due date, facilitator, attendees and
proposed slot, and the calendar invitations that keep everyone's calendar in step.

* :func:`review_book` books the review of an incident: on closure of a severity the policy
  requires (the ``reviews.booking`` event handler), or on demand for any incident that is not
  cancelled — also before it closes (a team may want to review a long-running incident early;
  its due date then counts from the booking). Idempotent: an incident's booked, held or
  published review is returned unchanged; a cancelled one is booked again (same UID, next
  SEQUENCE).
* :func:`review_reschedule` moves the meeting (SEQUENCE + 1, an updated invitation to everyone),
  :func:`review_cancel` cancels it (METHOD:CANCEL to everyone).

Changing the facilitator and the attendees is in :mod:`.attendees`, the invitations themselves
in :mod:`.invitations`, the overdue sweep in :mod:`.overdue`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from incidents.errors import ActionForbidden, InvalidInput, TransitionNotAllowed, VigilError
from incidents.models import (
    EscalationContact,
    Incident,
    Kind,
    ResponseRole,
    RoleAssignment,
    Status,
    TimelineEntry,
)
from incidents.services.common import audited_save, timeline_record

from ..models import AttendeeReason, Review, ReviewAttendee, ReviewPolicy, ReviewStatus
from .business_days import (
    business_day_add,
    business_day_end,
    business_days_between,
    policy_zone,
    review_due_date,
    review_policy_get,
)
from .invitations import active_attendees, send, when_text

__all__ = [
    "PROPOSED_AFTER_BUSINESS_DAYS",
    "ReviewStepNotAllowed",
    "review_book",
    "review_cancel",
    "review_close_guard",
    "review_required",
    "review_reschedule",
]

BOOK_PERMISSION = "reviews.book_review"
# The proposed slot is looked for from this many business days after closure (time for the
# report to be written, §4.2 step 4's 48 hours), and never after the due date.
PROPOSED_AFTER_BUSINESS_DAYS = 2
SLOT_STEP = timedelta(minutes=30)


class ReviewStepNotAllowed(TransitionNotAllowed):
    """A booking step not possible from the review's status (API 409)."""

    def __init__(self, *, action: str, status: str) -> None:
        self.action, self.status, self.allowed = action, status, []
        VigilError.__init__(self, f"Cannot {action} a review that is {status}.")


def require(actor: Any, action: str) -> None:
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(BOOK_PERMISSION)):
        raise ActionForbidden(action=action, user=actor)


def person_name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


# --- who is invited ------------------------------------------------------------------------------


def _incident_manager(incident: Incident) -> Any:
    assignment = (
        RoleAssignment.objects.select_related("user")
        .filter(incident=incident, role__key=ResponseRole.INCIDENT_MANAGER)
        .first()
    )
    return assignment.user if assignment is not None else None


def _role_holders(incident: Incident) -> list[Any]:
    """Everyone who held a role on the incident, also those replaced since (role history)."""
    User = get_user_model()
    ids = set(RoleAssignment.objects.filter(incident=incident).values_list("user_id", flat=True))
    ids |= set(
        RoleAssignment.history.filter(incident_id=incident.pk).values_list("user_id", flat=True)
    )
    ids.discard(None)
    return list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))


def _management_contacts(incident: Incident) -> list[tuple[str, str, Any]]:
    """(name, email, user) of the escalation levels that fired for the incident, read from its
    timeline's escalation entries (each names the level it escalated to)."""
    targets = {
        entry.get("target")
        for entry in TimelineEntry.objects.filter(incident=incident, kind=Kind.ESCALATION)
        .values_list("data", flat=True)
        .iterator()
        if isinstance(entry, dict) and entry.get("target")
    }
    if not targets:
        return []
    people = []
    for level in EscalationContact.objects.select_related("contact", "contact__user").filter(
        name__in=targets
    ):
        contact = level.contact
        if contact is None:
            continue
        email = contact.email or (contact.user.email if contact.user else "")
        if email:
            people.append((contact.name, email, contact.user))
    return people


def _prefilled_attendees(incident: Incident, facilitator: Any) -> list[tuple[str, str, Any, str]]:
    """(name, email, user, reason) for §8.1's attendees, each address once, first reason
    kept: the facilitator, the response team, the owners of the affected services, the
    management contacts of the escalation levels that fired. People without an email address
    cannot be invited and are left out."""
    wanted: list[tuple[str, str, Any, str]] = []
    if facilitator is not None:
        wanted.append(
            (person_name(facilitator), facilitator.email, facilitator, AttendeeReason.FACILITATOR)
        )
    for user in _role_holders(incident):
        wanted.append((person_name(user), user.email, user, AttendeeReason.RESPONSE_TEAM))
    for service in incident.services.select_related("owner").order_by("name"):
        owner = service.owner
        if owner is not None and owner.is_active:
            wanted.append((person_name(owner), owner.email, owner, AttendeeReason.SERVICE_OWNER))
    for name, email, user in _management_contacts(incident):
        wanted.append((name, email, user, AttendeeReason.MANAGEMENT))
    seen: set[str] = set()
    attendees = []
    for name, email, user, reason in wanted:
        address = (email or "").strip()
        if not address or address.lower() in seen:
            continue
        seen.add(address.lower())
        attendees.append((name, address, user, reason))
    return attendees


# --- when ----------------------------------------------------------------------------------------


def _proposed_slot(
    *,
    policy: ReviewPolicy,
    severity: int,
    counted_from: date,
    due_date: date,
    now: datetime,
    exclude: int | None = None,
) -> tuple[datetime, datetime]:
    """The first working-hours slot of the meeting's length, from the
    ``PROPOSED_AFTER_BUSINESS_DAYS``-th business day after ``counted_from`` to the due date,
    that starts after ``now`` and overlaps no other booked review. When every slot is taken,
    the first one that starts after ``now`` (people can reschedule); when none is left before
    the due date, the next business day's first slot."""
    zone = policy_zone(policy)
    length = timedelta(minutes=policy.meeting_length(severity))
    first_day = min(business_day_add(counted_from, PROPOSED_AFTER_BUSINESS_DAYS), due_date)
    today = now.astimezone(zone).date()
    first_day = max(first_day, today)

    def slots(day: date) -> Iterable[tuple[datetime, datetime]]:
        start = datetime.combine(day, policy.workday_start, tzinfo=zone)
        last = datetime.combine(day, policy.workday_end, tzinfo=zone) - length
        while start <= last:
            if start > now:
                yield start, start + length
            start += SLOT_STEP

    days = business_days_between(first_day, max(first_day, due_date))
    busy = list(
        Review.objects.filter(
            status=ReviewStatus.BOOKED,
            starts_at__isnull=False,
            starts_at__lt=datetime.combine(
                due_date + timedelta(days=1), policy.workday_start, zone
            ),
            ends_at__gt=datetime.combine(first_day, policy.workday_start, tzinfo=zone),
        )
        .exclude(pk=exclude)
        .values_list("starts_at", "ends_at")
    )
    fallback = None
    for day in days:
        for start, end in slots(day):
            fallback = fallback or (start, end)
            if not any(s < end and start < e for s, e in busy):
                return start, end
    if fallback is not None:
        return fallback
    day = max(due_date, today)
    while True:
        day = business_day_add(day, 1)
        for start, end in slots(day):
            return start, end


def record(review: Review, *, actor: Any, source: str, message: str, event: str, **data: Any):
    timeline_record(
        incident=review.incident,
        kind=Kind.UPDATE,
        source=source,
        actor=actor,
        message=message,
        data={"review": review.pk, "review_event": event, **data},
    )


def locked_review(review: Review) -> Review:
    return (
        # Lock the review only: the facilitator is a nullable join PostgreSQL cannot lock.
        Review.objects.select_for_update(of=("self",))
        .select_related("incident", "facilitator")
        .get(pk=review.pk)
    )


def check_booked(review: Review, action: str) -> None:
    if review.status != ReviewStatus.BOOKED:
        raise ReviewStepNotAllowed(action=action, status=review.get_status_display().lower())


# --- booking -------------------------------------------------------------------------------------


@transaction.atomic
def review_book(*, incident: Incident, actor: Any, source: str, required: bool = False) -> Review:
    """Book the review of ``incident``: due on the policy's ``business_days``-th business day
    after closure (after today for an incident not closed yet, or closed so long ago that
    this day has passed), facilitated by the incident manager (else the booking user),
    attendees pre-filled (§8.1), a proposed slot, and an invitation emailed to every attendee.

    Refused for a cancelled incident (InvalidInput) and without the ``book_review``
    permission (ActionForbidden; ``actor`` None is Vigil itself). Idempotent: the incident's
    existing booked, held or published review is returned unchanged. A cancelled review is
    booked again: same UID, next SEQUENCE, attendees invited anew."""
    require(actor, "book reviews")
    locked_incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if locked_incident.status == Status.CANCELLED:
        raise InvalidInput(
            {"incident": f"{locked_incident.number} is cancelled: it has no review."}
        )
    existing = Review.objects.select_for_update().filter(incident=locked_incident).first()
    if existing is not None and existing.status != ReviewStatus.CANCELLED:
        return existing

    policy = review_policy_get()
    now = timezone.now()
    zone = policy_zone(policy)
    due_date = None
    counted_from = now.astimezone(zone).date()
    if locked_incident.closed_at is not None:
        due_date = review_due_date(closed_at=locked_incident.closed_at, policy=policy)
        counted_from = locked_incident.closed_at.astimezone(zone).date()
    if due_date is None or due_date < now.astimezone(zone).date():
        due_date = review_due_date(closed_at=now, policy=policy)
        counted_from = now.astimezone(zone).date()
    starts_at, ends_at = _proposed_slot(
        policy=policy,
        severity=locked_incident.severity_id,
        counted_from=counted_from,
        due_date=due_date,
        now=now,
        exclude=existing.pk if existing else None,
    )
    facilitator = _incident_manager(locked_incident)
    if facilitator is None and actor is not None and getattr(actor, "email", ""):
        facilitator = actor

    review = existing or Review(incident=locked_incident, created_by=actor)
    if existing is not None:
        review.sequence += 1
        review.cancelled_reason = ""
        review.attendees.all().delete()
    review.status = ReviewStatus.BOOKED
    review.required = required
    review.due_date = due_date
    review.starts_at, review.ends_at = starts_at, ends_at
    review.facilitator = facilitator
    review.facilitator_name = person_name(facilitator)
    review.facilitator_email = ""
    review.overdue_at = None
    review.next_check_at = business_day_end(due_date, policy)
    audited_save(review, actor=actor, reason="booked" if existing is None else "booked again")

    ReviewAttendee.objects.bulk_create(
        ReviewAttendee(review=review, name=name, email=email, user=user, reason=reason)
        for name, email, user, reason in _prefilled_attendees(locked_incident, facilitator)
    )
    attendees = active_attendees(review)
    send(review=review, method="REQUEST", to=attendees, everyone=attendees, policy=policy)
    why = "required by the review policy" if required else "on demand"
    record(
        review,
        actor=actor,
        source=source,
        event="booked",
        message=(
            f"Post-incident review booked ({why}): due {due_date:%a %d %b %Y}, proposed for "
            f"{when_text(review, policy)}; {len(attendees)} people invited."
        ),
        due_date=due_date.isoformat(),
        starts_at=starts_at.isoformat(),
        invited=len(attendees),
    )
    return review


@transaction.atomic
def review_reschedule(
    *,
    review: Review,
    actor: Any,
    source: str,
    starts_at: datetime,
    location: str | None = None,
) -> Review:
    """Move a booked review to ``starts_at`` (an aware date and time in the future; the
    meeting keeps its length) and, if given, ``location``. SEQUENCE + 1 and an updated
    invitation to every attendee. Idempotent: the same time and place changes nothing.
    Refused for a review that is not booked (409), bad input (400), no permission (403)."""
    require(actor, "reschedule reviews")
    if not isinstance(starts_at, datetime) or timezone.is_naive(starts_at):
        raise InvalidInput({"starts_at": "Give a date and time with its time zone."})
    location = None if location is None else " ".join(str(location).split())
    if location is not None and len(location) > 300:
        raise InvalidInput({"location": "At most 300 characters."})
    locked = locked_review(review)
    check_booked(locked, "reschedule")
    if locked.starts_at == starts_at and (location is None or location == locked.location):
        return locked
    if starts_at <= timezone.now():
        raise InvalidInput({"starts_at": "The meeting must start in the future."})
    policy = review_policy_get()
    if locked.starts_at and locked.ends_at:
        length = locked.ends_at - locked.starts_at
    else:
        length = timedelta(minutes=policy.meeting_length(locked.incident.severity_id))
    locked.starts_at, locked.ends_at = starts_at, starts_at + length
    if location is not None:
        locked.location = location
    locked.sequence += 1
    audited_save(locked, actor=actor, reason="rescheduled")
    attendees = active_attendees(locked)
    send(review=locked, method="REQUEST", to=attendees, everyone=attendees, policy=policy)
    record(
        locked,
        actor=actor,
        source=source,
        event="rescheduled",
        message=f"Post-incident review rescheduled to {when_text(locked, policy)}"
        + (f" at {locked.location}" if locked.location else "")
        + ".",
        starts_at=starts_at.isoformat(),
        sequence=locked.sequence,
    )
    return locked


@transaction.atomic
def review_cancel(*, review: Review, actor: Any, source: str, reason: str) -> Review:
    """Cancel a booked review, with a reason: METHOD:CANCEL (SEQUENCE + 1) to every attendee.
    Idempotent: cancelling a cancelled review changes nothing. Refused for a held or published
    review (409), without a reason (400), without permission (403)."""
    require(actor, "cancel reviews")
    reason = (reason or "").strip()
    locked = locked_review(review)
    if locked.status == ReviewStatus.CANCELLED:
        return locked
    check_booked(locked, "cancel")
    if not reason:
        raise InvalidInput({"reason": "Say why the review is cancelled."})
    policy = review_policy_get()
    locked.status = ReviewStatus.CANCELLED
    locked.cancelled_reason = reason
    locked.sequence += 1
    locked.next_check_at = None
    audited_save(locked, actor=actor, reason="cancelled")
    attendees = active_attendees(locked)
    send(
        review=locked,
        method="CANCEL",
        to=attendees,
        everyone=attendees,
        policy=policy,
        note=f"Reason: {reason}",
    )
    record(
        locked,
        actor=actor,
        source=source,
        event="cancelled",
        message=f"Post-incident review cancelled: {reason}",
        reason=reason,
    )
    return locked


def review_required(*, incident: Incident, policy: ReviewPolicy | None = None) -> bool:
    """Whether the policy requires a review when ``incident`` closes."""
    policy = policy or review_policy_get()
    return incident.severity_id in {int(s) for s in policy.required_severities or []}


def review_close_guard(incident: Incident) -> dict[str, str]:
    """The close guard (``incidents.guards``): an incident whose severity is in the policy's
    ``close_guard_severities`` closes only once its review is booked (not cancelled)."""
    policy = review_policy_get()
    if incident.severity_id not in {int(s) for s in policy.close_guard_severities or []}:
        return {}
    if Review.objects.filter(incident=incident).exclude(status=ReviewStatus.CANCELLED).exists():
        return {}
    return {
        "review": f"A Sev {incident.severity_id} incident closes once its post-incident review "
        "is booked (review policy)."
    }
