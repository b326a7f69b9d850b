"""The reviews demo, on top of the incident demo (``manage.py demo_data``): the closed demo
incident (the orders database failover, a Sev 1) gets its post-incident review as it would
have happened — booked when it closed (its calendar invitations in the outbox), held at the
proposed slot with attendance, written to §8.2's agenda, with two action items (one done, one
past its due date) — and published, which turns its lessons into a knowledge-base article.

Everything goes through the services the admin and the API use, each at its moment under
time-machine. Loaded once: a published review of that incident means it is there already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from incidents.events import incident_events_follow
from incidents.models import Incident, Source

from ..models import ActionKind, ActionPriority, ActionStatus, Review, ReviewStatus
from ..services.actions import action_item_create, action_item_set_status
from ..services.booking import review_book
from ..services.reviews import review_mark_held, review_publish, review_sections_update

try:
    import time_machine
except ImportError:  # a production install without the dev extra
    time_machine = None

STORY = "Orders database failover: checkout and order history unavailable"
MANAGER = "maria"  # Incident Manager: facilitator, writes and publishes the review
TECH_LEAD = "priya"

SECTIONS = {
    "overview": (
        "The orders database primary stopped accepting writes; checkout and order history "
        "failed for 38 minutes until the failover to the replica completed."
    ),
    "went_well": (
        "- The error-rate alert fired within 4 minutes of the first failed write.\n"
        "- The failover runbook worked as written once started."
    ),
    "wrong_detection": "No alert on replication lag: the replica was 9 minutes behind.",
    "wrong_communication": "The first public update went out after 41 minutes (target 30).",
    "wrong_technical": "Automatic failover was disabled since the last maintenance.",
    "wrong_process": "Nobody owned re-enabling automatic failover after maintenance.",
    "primary_cause": "The primary's disk filled with WAL segments a stuck archiver never removed.",
    "contributing_factors": "Disk alerts at 90 % went to a channel nobody watches at night.",
    "systemic_issues": "Maintenance checklists have no step to restore automation.",
    "lessons_learned": (
        "Alert on WAL archiver failures and replication lag; every maintenance ends by "
        "re-enabling what it switched off."
    ),
}


@dataclass
class Result:
    loaded: bool = False
    review: Review | None = None
    actions: int = 0


@contextlib.contextmanager
def _at(moment: datetime) -> Iterator[None]:
    with time_machine.travel(moment, tick=False):
        yield


def missing_prerequisites() -> list[str]:
    missing = []
    if time_machine is None:
        missing.append("time-machine (install the dev extra: pip install -e '.[dev]')")
    if not Incident.objects.filter(title=STORY, closed_at__isnull=False).exists():
        missing.append("the closed demo incident")
    users = set(
        get_user_model()
        .objects.filter(username__in=[MANAGER, TECH_LEAD])
        .values_list("username", flat=True)
    )
    if users != {MANAGER, TECH_LEAD}:
        missing.append(f"the demo users {MANAGER} and {TECH_LEAD}")
    return missing


def load() -> Result:
    """Load the reviews demo (see the module docstring); loads nothing when the demo
    incident's review is already published. Raises RuntimeError naming what is missing."""
    result = Result()
    done = Review.objects.filter(incident__title=STORY, status=ReviewStatus.PUBLISHED).first()
    if done is not None:
        result.review = done
        return result
    missing = missing_prerequisites()
    if missing:
        raise RuntimeError("; ".join(missing))
    User = get_user_model()
    manager = User.objects.get(username=MANAGER)
    lead = User.objects.get(username=TECH_LEAD)
    incident = Incident.objects.get(title=STORY)
    closed = incident.closed_at
    # The closure's events (the booking among them), followed a minute after the closure as
    # the worker would have: the review is booked then, its slot proposed from then. (When
    # something followed them already, e.g. a worker, the review booked then is used.)
    with _at(closed + timedelta(minutes=1)):
        incident_events_follow(incident_id=incident.pk)
    with transaction.atomic():
        with _at(closed + timedelta(minutes=1)):
            review = review_book(incident=incident, actor=manager, source=Source.ADMIN)
        # Held at the proposed slot, or a day before now if the slot is still ahead (the
        # demo's closure is five days back, so the slot is usually past): an action item due
        # that day is overdue today.
        now = timezone.now()
        held = min(review.starts_at or now, now - timedelta(hours=26))
        with _at(held + timedelta(minutes=90)):
            review = review_sections_update(
                review=review, actor=manager, source=Source.ADMIN, **SECTIONS
            )
            review = review_mark_held(
                review=review,
                actor=manager,
                source=Source.ADMIN,
                held_at=held,
                attendance={attendee.pk: True for attendee in review.attendees.all()},
            )
            fix = action_item_create(
                incident=incident,
                actor=manager,
                source=Source.ADMIN,
                kind=ActionKind.IMMEDIATE_FIX,
                title="Alert on WAL archiver failures and replication lag over 60 s",
                owner=lead,
                due_date=held.date(),
                priority=ActionPriority.HIGH,
                review=review,
                from_review=True,
            )
            action_item_create(
                incident=incident,
                actor=manager,
                source=Source.ADMIN,
                kind=ActionKind.PROCESS,
                title="Maintenance checklist: re-enable automatic failover as the last step",
                owner=manager,
                due_date=held.date(),
                priority=ActionPriority.MEDIUM,
                review=review,
                from_review=True,
            )
            result.actions = 2
        with _at(held + timedelta(hours=20)):
            action_item_set_status(
                item=fix, actor=lead, source=Source.ADMIN, status=ActionStatus.DONE
            )
            review = review_publish(review=review, actor=manager, source=Source.ADMIN)
    result.review = review
    result.loaded = True
    return result
