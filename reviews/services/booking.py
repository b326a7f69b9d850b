"""Booking post-incident reviews (§8.1): the review, its due date, facilitator, attendees and
proposed slot, and the calendar invitations that keep everyone's calendar in step.

* :func:`review_book` books the review of an incident: on closure of a severity the policy
  requires (the ``reviews.booking`` event handler), or on demand for any incident that is not
  cancelled — also before it closes (a team may want to review a long-running incident early;
  its due date then counts from the booking). Idempotent: an incident's booked, held or
  published review is returned unchanged; a cancelled one is booked again (same UID, next
  SEQUENCE).
* :func:`review_reschedule` moves the meeting (SEQUENCE + 1, an updated invitation to everyone),
  :func:`review_cancel` cancels it (METHOD:CANCEL to everyone),
  :func:`review_facilitator_set` changes the facilitator (a user, or someone external by email),
  :func:`review_attendee_add` / :func:`review_attendee_remove` invite and uninvite one person.
* :func:`reviews_overdue_sweep` flags booked reviews not held by the end of their due date,
  records it on the incident's timeline and reminds the facilitator, once.

Every invitation leaves through the outbox (an email carrying the .ics), written in the same
transaction as the change, under the key ``review-invite:<uid>:<address>:<SEQUENCE>:<METHOD>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.errors import ActionForbidden, InvalidInput, TransitionNotAllowed, VigilError
from incidents.models import (
    EscalationContact,
    Incident,
    Kind,
    ResponseRole,
    RoleAssignment,
    Source,
    Status,
    TimelineEntry,
)
from incidents.services.common import audited_save, timeline_record
from incidents.timeformat import time_text, when

from ..models import AttendeeReason, Review, ReviewAttendee, ReviewPolicy, ReviewStatus
from .business_days import (
    business_day_add,
    business_day_end,
    business_days_between,
    policy_zone,
    review_due_date,
    review_policy_get,
)
from .calendar import (
    Invitee,
    invitation_description,
    invitation_ics,
    invitation_summary,
    review_url,
)

__all__ = [
    "PROPOSED_AFTER_BUSINESS_DAYS",
    "ReviewStepNotAllowed",
    "review_attendee_add",
    "review_attendee_remove",
    "review_book",
    "review_cancel",
    "review_close_guard",
    "review_facilitator_set",
    "review_required",
    "review_reschedule",
    "reviews_overdue_sweep",
]

BOOK_PERMISSION = "reviews.book_review"
# The proposed slot is looked for from this many business days after closure (time for the
# report to be written, §4.2 step 4's 48 hours), and never after the due date.
PROPOSED_AFTER_BUSINESS_DAYS = 2
SLOT_STEP = timedelta(minutes=30)
INVITATION_TEMPLATE = "review_invitation"
OVERDUE_TEMPLATE = "review_overdue"


class ReviewStepNotAllowed(TransitionNotAllowed):
    """A booking step not possible from the review's status (API 409)."""

    def __init__(self, *, action: str, status: str) -> None:
        self.action, self.status, self.allowed = action, status, []
        VigilError.__init__(self, f"Cannot {action} a review that is {status}.")


def _require(actor: Any, action: str) -> None:
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(BOOK_PERMISSION)):
        raise ActionForbidden(action=action, user=actor)


def _name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


def _key_part(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:20]


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
            (_name(facilitator), facilitator.email, facilitator, AttendeeReason.FACILITATOR)
        )
    for user in _role_holders(incident):
        wanted.append((_name(user), user.email, user, AttendeeReason.RESPONSE_TEAM))
    for service in incident.services.select_related("owner").order_by("name"):
        owner = service.owner
        if owner is not None and owner.is_active:
            wanted.append((_name(owner), owner.email, owner, AttendeeReason.SERVICE_OWNER))
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


# --- invitations ---------------------------------------------------------------------------------


def _active_attendees(review: Review) -> list[ReviewAttendee]:
    return list(review.attendees.filter(removed_at__isnull=True).order_by("id"))


def _invitees(review: Review, attendees: list[ReviewAttendee]) -> list[Invitee]:
    chair = review.facilitator_email or (review.facilitator.email if review.facilitator else "")
    return [
        Invitee(
            email=a.email,
            name=a.name,
            chair=a.reason == AttendeeReason.FACILITATOR or a.email.lower() == chair.lower(),
        )
        for a in attendees
    ]


def _when_text(review: Review, policy: ReviewPolicy) -> str:
    if review.starts_at is None:
        return "Time to be agreed."
    zone = policy_zone(policy)
    start = review.starts_at.astimezone(zone)
    end = (review.ends_at or review.starts_at).astimezone(zone)
    day = f"{start:%A} {when(start, zone=zone)}"
    if end.date() == start.date():
        return f"{day} – {time_text(end, zone=zone)}"
    return f"{day} – {when(end, zone=zone)}"


def _send(
    *,
    review: Review,
    method: str,
    to: list[ReviewAttendee],
    everyone: list[ReviewAttendee],
    policy: ReviewPolicy,
    note: str = "",
) -> None:
    """One email per person in ``to``, carrying the invitation (or its cancellation), which
    lists ``everyone`` as attendees."""
    if not to:
        return
    ics = invitation_ics(review=review, method=method, invitees=_invitees(review, everyone))
    summary = invitation_summary(review)
    if method == "CANCEL":
        subject = f"Cancelled: {summary}"
        intro = "This post-incident review is cancelled for you."
    elif review.sequence:
        subject = f"Updated invitation: {summary}"
        intro = "This post-incident review has changed."
    else:
        subject = f"Invitation: {summary}"
        intro = "You are invited to this post-incident review."
    lines = [intro]
    if note:
        lines.append(note)
    lines += [
        "",
        f"When: {_when_text(review, policy)}",
    ]
    if review.location:
        lines.append(f"Where: {review.location}")
    body = "\n".join(lines) + "\n\n" + invitation_description(review) + "\n"
    for attendee in to:
        notification_enqueue(
            incident=review.incident,
            channel="email",
            recipient=attendee.email,
            subject=subject,
            body=body,
            template=INVITATION_TEMPLATE,
            reason=f"Post-incident review {method.lower()}",
            idempotency_key=(
                f"review-invite:{review.uid}:{_key_part(attendee.email)}:{review.sequence}:{method}"
            ),
            context={"ics": ics, "ics_method": method, "review": review.pk},
        )
        if method == "REQUEST":
            attendee.invited_sequence = review.sequence
            attendee.save(update_fields=["invited_sequence"])


def _record(review: Review, *, actor: Any, source: str, message: str, event: str, **data: Any):
    timeline_record(
        incident=review.incident,
        kind=Kind.UPDATE,
        source=source,
        actor=actor,
        message=message,
        data={"review": review.pk, "review_event": event, **data},
    )


def _locked(review: Review) -> Review:
    return (
        # Lock the review only: the facilitator is a nullable join PostgreSQL cannot lock.
        Review.objects.select_for_update(of=("self",))
        .select_related("incident", "facilitator")
        .get(pk=review.pk)
    )


def _check_booked(review: Review, action: str) -> None:
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
    _require(actor, "book reviews")
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
    review.facilitator_name = _name(facilitator)
    review.facilitator_email = ""
    review.overdue_at = None
    review.next_check_at = business_day_end(due_date, policy)
    audited_save(review, actor=actor, reason="booked" if existing is None else "booked again")

    ReviewAttendee.objects.bulk_create(
        ReviewAttendee(review=review, name=name, email=email, user=user, reason=reason)
        for name, email, user, reason in _prefilled_attendees(locked_incident, facilitator)
    )
    attendees = _active_attendees(review)
    _send(review=review, method="REQUEST", to=attendees, everyone=attendees, policy=policy)
    why = "required by the review policy" if required else "on demand"
    _record(
        review,
        actor=actor,
        source=source,
        event="booked",
        message=(
            f"Post-incident review booked ({why}): due {due_date:%a %d %b %Y}, proposed for "
            f"{_when_text(review, policy)}; {len(attendees)} people invited."
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
    _require(actor, "reschedule reviews")
    if not isinstance(starts_at, datetime) or timezone.is_naive(starts_at):
        raise InvalidInput({"starts_at": "Give a date and time with its time zone."})
    location = None if location is None else " ".join(str(location).split())
    if location is not None and len(location) > 300:
        raise InvalidInput({"location": "At most 300 characters."})
    locked = _locked(review)
    _check_booked(locked, "reschedule")
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
    attendees = _active_attendees(locked)
    _send(review=locked, method="REQUEST", to=attendees, everyone=attendees, policy=policy)
    _record(
        locked,
        actor=actor,
        source=source,
        event="rescheduled",
        message=f"Post-incident review rescheduled to {_when_text(locked, policy)}"
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
    _require(actor, "cancel reviews")
    reason = (reason or "").strip()
    locked = _locked(review)
    if locked.status == ReviewStatus.CANCELLED:
        return locked
    _check_booked(locked, "cancel")
    if not reason:
        raise InvalidInput({"reason": "Say why the review is cancelled."})
    policy = review_policy_get()
    locked.status = ReviewStatus.CANCELLED
    locked.cancelled_reason = reason
    locked.sequence += 1
    locked.next_check_at = None
    audited_save(locked, actor=actor, reason="cancelled")
    attendees = _active_attendees(locked)
    _send(
        review=locked,
        method="CANCEL",
        to=attendees,
        everyone=attendees,
        policy=policy,
        note=f"Reason: {reason}",
    )
    _record(
        locked,
        actor=actor,
        source=source,
        event="cancelled",
        message=f"Post-incident review cancelled: {reason}",
        reason=reason,
    )
    return locked


def _clean_email(email: str, field: str = "email") -> str:
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput({field: f"{email!r} is not an email address."}) from None
    return email


def _attendee_for(
    review: Review, *, name: str, email: str, user: Any, reason: str
) -> tuple[ReviewAttendee, bool]:
    """The attendee of ``email`` (added, or brought back if removed), and whether they need an
    invitation now."""
    attendee = review.attendees.filter(email__iexact=email).first()
    if attendee is None:
        attendee = ReviewAttendee.objects.create(
            review=review, name=name, email=email, user=user, reason=reason
        )
        return attendee, True
    if attendee.removed_at is not None:
        attendee.removed_at = None
        attendee.reason = reason
        attendee.name = name or attendee.name
        attendee.user = user or attendee.user
        attendee.save()
        return attendee, True
    if reason == AttendeeReason.FACILITATOR and attendee.reason != reason:
        attendee.reason = reason
        attendee.save(update_fields=["reason"])
    return attendee, False


def _invite_one(review: Review, attendee: ReviewAttendee, policy: ReviewPolicy) -> None:
    # Someone invited again at a SEQUENCE they already received (invited, removed, invited
    # back) would get nothing under the same key, and their calendar would ignore it: the
    # invitation moves to the next SEQUENCE.
    if attendee.invited_sequence is not None and attendee.invited_sequence >= review.sequence:
        review.sequence = attendee.invited_sequence + 1
        review.save(update_fields=["sequence", "updated_at"])
    _send(
        review=review,
        method="REQUEST",
        to=[attendee],
        everyone=_active_attendees(review),
        policy=policy,
    )


@transaction.atomic
def review_facilitator_set(
    *,
    review: Review,
    actor: Any,
    source: str,
    user: Any = None,
    name: str = "",
    email: str = "",
) -> Review:
    """Make ``user`` (an active user with an email address) or an external person (``email``,
    optional ``name``) the facilitator of a booked review. They are invited (as the meeting's
    chair) if they were not already; the former facilitator stays invited. Idempotent.
    Refused: neither or both given, a bad address, a review not booked."""
    _require(actor, "change review facilitators")
    if (user is None) == (not (email or "").strip()):
        raise InvalidInput({"facilitator": "Give either a user or an email address."})
    if user is not None:
        if not getattr(user, "is_active", False):
            raise InvalidInput({"user": f"{user} is not an active user."})
        if not user.email:
            raise InvalidInput({"user": f"{user} has no email address to invite."})
        address, display = user.email, _name(user)
    else:
        address = _clean_email(email)
        display = " ".join((name or "").split())[:200]
    locked = _locked(review)
    _check_booked(locked, "change the facilitator of")
    if user is not None and locked.facilitator_id == user.pk and not locked.facilitator_email:
        return locked
    if user is None and locked.facilitator_email.lower() == address.lower():
        return locked
    previous = locked.attendees.filter(reason=AttendeeReason.FACILITATOR).exclude(
        email__iexact=address
    )
    for attendee in previous:
        attendee.reason = AttendeeReason.ADDED
        attendee.save(update_fields=["reason"])
    locked.facilitator = user
    locked.facilitator_name = display
    locked.facilitator_email = "" if user is not None else address
    audited_save(locked, actor=actor, reason="facilitator changed")
    attendee, invite = _attendee_for(
        locked, name=display, email=address, user=user, reason=AttendeeReason.FACILITATOR
    )
    policy = review_policy_get()
    if invite:
        _invite_one(locked, attendee, policy)
    _record(
        locked,
        actor=actor,
        source=source,
        event="facilitator",
        message=f"Post-incident review facilitator: {display or address}"
        + (" (external)." if user is None else "."),
    )
    return locked


@transaction.atomic
def review_attendee_add(
    *,
    review: Review,
    actor: Any,
    source: str,
    user: Any = None,
    email: str = "",
    name: str = "",
) -> ReviewAttendee:
    """Invite one more person to a booked review (a user, or anyone by email): they get the
    invitation at once. Idempotent: someone already invited is returned unchanged."""
    _require(actor, "invite to reviews")
    if (user is None) == (not (email or "").strip()):
        raise InvalidInput({"attendee": "Give either a user or an email address."})
    if user is not None:
        if not getattr(user, "is_active", False):
            raise InvalidInput({"user": f"{user} is not an active user."})
        if not user.email:
            raise InvalidInput({"user": f"{user} has no email address to invite."})
        address, display = user.email, _name(user)
    else:
        address = _clean_email(email)
        display = " ".join((name or "").split())[:200]
    locked = _locked(review)
    _check_booked(locked, "invite people to")
    attendee, invite = _attendee_for(
        locked, name=display, email=address, user=user, reason=AttendeeReason.ADDED
    )
    if invite:
        _invite_one(locked, attendee, review_policy_get())
        _record(
            locked,
            actor=actor,
            source=source,
            event="attendee_added",
            message=f"Invited to the post-incident review: {display or address}.",
        )
    return attendee


@transaction.atomic
def review_attendee_remove(
    *, review: Review, actor: Any, source: str, attendee: ReviewAttendee
) -> ReviewAttendee:
    """Uninvite someone from a booked review: they get a METHOD:CANCEL for their calendar.
    Refused for the facilitator (set another one first). Idempotent."""
    _require(actor, "uninvite from reviews")
    locked = _locked(review)
    _check_booked(locked, "uninvite people from")
    row = ReviewAttendee.objects.select_for_update().filter(pk=attendee.pk, review=locked).first()
    if row is None:
        raise InvalidInput({"attendee": "Not an attendee of this review."})
    if row.removed_at is not None:
        return row
    if row.reason == AttendeeReason.FACILITATOR:
        raise InvalidInput({"attendee": "The facilitator stays invited; set another one first."})
    row.removed_at = timezone.now()
    row.save(update_fields=["removed_at"])
    _send(
        review=locked,
        method="CANCEL",
        to=[row],
        everyone=[row],
        policy=review_policy_get(),
    )
    _record(
        locked,
        actor=actor,
        source=source,
        event="attendee_removed",
        message=f"Uninvited from the post-incident review: {row.name or row.email}.",
    )
    return row


# --- overdue -------------------------------------------------------------------------------------

OVERDUE_BATCH = 100


def reviews_overdue_sweep(*, now: datetime | None = None) -> int:
    """Flag the booked reviews whose due date has ended (in the policy's time zone) without
    being held: ``overdue_at`` set, a timeline entry on the incident, and the facilitator
    reminded by email, each once. Rows are claimed with ``SKIP LOCKED``, so sweeps running at
    the same moment never flag one review twice. Returns how many were flagged."""
    now = now or timezone.now()
    flagged = 0
    policy = review_policy_get()
    while True:
        with transaction.atomic():
            batch = list(
                Review.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("incident", "facilitator")
                .filter(
                    status=ReviewStatus.BOOKED,
                    overdue_at__isnull=True,
                    next_check_at__lte=now,
                )
                .order_by("next_check_at", "pk")[:OVERDUE_BATCH]
            )
            for review in batch:
                _flag_overdue(review, now=now, policy=policy)
            flagged += len(batch)
        if len(batch) < OVERDUE_BATCH:
            return flagged


def _flag_overdue(review: Review, *, now: datetime, policy: ReviewPolicy) -> None:
    if business_day_end(review.due_date, policy) > now:
        # The policy's zone changed since booking: not yet overdue there; check again then.
        review.next_check_at = business_day_end(review.due_date, policy)
        review.save(update_fields=["next_check_at", "updated_at"])
        return
    review.overdue_at = now
    review.next_check_at = None
    audited_save(review, actor=None, reason="overdue")
    incident = review.incident
    timeline_record(
        incident=incident,
        kind=Kind.UPDATE,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"The post-incident review was due by {review.due_date:%a %d %b %Y} and has not "
            "been held."
        ),
        data={"review": review.pk, "review_event": "overdue", "due_date": str(review.due_date)},
        occurred_at=now,
    )
    address = review.facilitator_email or (
        review.facilitator.email if review.facilitator is not None else ""
    )
    if not address:
        return
    summary = invitation_summary(review)
    notification_enqueue(
        incident=incident,
        channel="email",
        recipient=address,
        subject=f"Overdue: {summary}",
        body=(
            f"The post-incident review of {incident.number} was due by "
            f"{review.due_date:%A %d %B %Y} and has not been held.\n"
            f"Booked for: {_when_text(review, policy)}\n\n"
            "Hold it, or reschedule it, and record it as held on the review page:\n"
            f"{review_url(review)}\n"
        ),
        template=OVERDUE_TEMPLATE,
        reason="Post-incident review overdue",
        idempotency_key=f"review-overdue:{review.uid}",
        context={"review": review.pk},
    )


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
