"""The calendar invitations of a post-incident review: one email per attendee carrying the
.ics (an invitation, an update or a cancellation), and how the meeting's time reads in it.

Every invitation leaves through the outbox (an email carrying the .ics), written in the same
transaction as the change, under the key ``review-invite:<uid>:<address>:<SEQUENCE>:<METHOD>``.
"""

from __future__ import annotations

import hashlib

from escalation.outbox import OutboxMessage, notification_enqueue_together
from incidents.timeformat import time_text, when

from ..models import AttendeeReason, Review, ReviewAttendee, ReviewPolicy
from .business_days import policy_zone
from .calendar import Invitee, invitation_description, invitation_ics, invitation_summary

__all__ = ["INVITATION_TEMPLATE", "active_attendees", "send", "when_text"]

INVITATION_TEMPLATE = "review_invitation"


def _key_part(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:20]


def active_attendees(review: Review) -> list[ReviewAttendee]:
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


def when_text(review: Review, policy: ReviewPolicy) -> str:
    if review.starts_at is None:
        return "Time to be agreed."
    zone = policy_zone(policy)
    start = review.starts_at.astimezone(zone)
    end = (review.ends_at or review.starts_at).astimezone(zone)
    day = f"{start:%A} {when(start, zone=zone)}"
    if end.date() == start.date():
        return f"{day} – {time_text(end, zone=zone)}"
    return f"{day} – {when(end, zone=zone)}"


def send(
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
        f"When: {when_text(review, policy)}",
    ]
    if review.location:
        lines.append(f"Where: {review.location}")
    body = "\n".join(lines) + "\n\n" + invitation_description(review) + "\n"
    notification_enqueue_together(
        [
            OutboxMessage(
                incident=review.incident,
                channel="email",
                recipient=attendee.email,
                subject=subject,
                body=body,
                template=INVITATION_TEMPLATE,
                reason=f"Post-incident review {method.lower()}",
                idempotency_key=(
                    f"review-invite:{review.uid}:{_key_part(attendee.email)}:"
                    f"{review.sequence}:{method}"
                ),
                context={"ics": ics, "ics_method": method, "review": review.pk},
            )
            for attendee in to
        ]
    )
    if method == "REQUEST":
        for attendee in to:
            attendee.invited_sequence = review.sequence
            attendee.save(update_fields=["invited_sequence"])
