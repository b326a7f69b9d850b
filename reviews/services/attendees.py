"""Changing who a booked post-incident review invites, each change sent as a calendar
invitation at once:

* :func:`review_facilitator_set` changes the facilitator (a user, or someone external by email),
* :func:`review_attendee_add` / :func:`review_attendee_remove` invite and uninvite one person.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.services.common import audited_save

from ..models import AttendeeReason, Review, ReviewAttendee, ReviewPolicy
from .booking import check_booked, locked_review, person_name, record, require
from .business_days import review_policy_get
from .invitations import active_attendees, send

__all__ = ["review_attendee_add", "review_attendee_remove", "review_facilitator_set"]


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
    send(
        review=review,
        method="REQUEST",
        to=[attendee],
        everyone=active_attendees(review),
        policy=policy,
    )


def _invitee(*, user: Any, email: str, name: str, field: str) -> tuple[str, str]:
    """The address and name to invite: an active user with an email address, or an external
    person by ``email`` (and optional ``name``). Exactly one of the two must be given; the
    refusal names ``field``."""
    if (user is None) == (not (email or "").strip()):
        raise InvalidInput({field: "Give either a user or an email address."})
    if user is not None:
        if not getattr(user, "is_active", False):
            raise InvalidInput({"user": f"{user} is not an active user."})
        if not user.email:
            raise InvalidInput({"user": f"{user} has no email address to invite."})
        return user.email, person_name(user)
    return _clean_email(email), " ".join((name or "").split())[:200]


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
    require(actor, "change review facilitators")
    address, display = _invitee(user=user, email=email, name=name, field="facilitator")
    locked = locked_review(review)
    check_booked(locked, "change the facilitator of")
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
    record(
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
    require(actor, "invite to reviews")
    address, display = _invitee(user=user, email=email, name=name, field="attendee")
    locked = locked_review(review)
    check_booked(locked, "invite people to")
    attendee, invite = _attendee_for(
        locked, name=display, email=address, user=user, reason=AttendeeReason.ADDED
    )
    if invite:
        _invite_one(locked, attendee, review_policy_get())
        record(
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
    require(actor, "uninvite from reviews")
    locked = locked_review(review)
    check_booked(locked, "uninvite people from")
    row = ReviewAttendee.objects.select_for_update().filter(pk=attendee.pk, review=locked).first()
    if row is None:
        raise InvalidInput({"attendee": "Not an attendee of this review."})
    if row.removed_at is not None:
        return row
    if row.reason == AttendeeReason.FACILITATOR:
        raise InvalidInput({"attendee": "The facilitator stays invited; set another one first."})
    row.removed_at = timezone.now()
    row.save(update_fields=["removed_at"])
    send(
        review=locked,
        method="CANCEL",
        to=[row],
        everyone=[row],
        policy=review_policy_get(),
    )
    record(
        locked,
        actor=actor,
        source=source,
        event="attendee_removed",
        message=f"Uninvited from the post-incident review: {row.name or row.email}.",
    )
    return row
