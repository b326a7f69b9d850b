"""Overdue post-incident reviews: :func:`reviews_overdue_sweep` flags booked reviews not held by
the end of their due date, records it on the incident's timeline and reminds the facilitator,
once.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.models import Kind, Source
from incidents.services.common import audited_save, timeline_record

from ..models import Review, ReviewPolicy, ReviewStatus
from .business_days import business_day_end, review_policy_get
from .calendar import invitation_summary, review_url
from .invitations import when_text

__all__ = ["reviews_overdue_sweep"]

OVERDUE_TEMPLATE = "review_overdue"
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
            f"Booked for: {when_text(review, policy)}\n\n"
            "Hold it, or reschedule it, and record it as held on the review page:\n"
            f"{review_url(review)}\n"
        ),
        template=OVERDUE_TEMPLATE,
        reason="Post-incident review overdue",
        idempotency_key=f"review-overdue:{review.uid}",
        context={"review": review.pk},
    )
