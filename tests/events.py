"""Following incident events in tests, as the dispatcher does after commit.

A test's transaction never commits, so the kicks queued with ``on_commit`` never fire. Tests of
what the followers do (escalation, ...) call :func:`follow_events` after the action, which runs
the same service the kicked task and the sweep run, for every incident with due events.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.utils import timezone

from incidents.events import FollowResult, incident_events_follow
from incidents.models import EventStatus, IncidentEvent, Source
from incidents.services import incident_create

P = ParamSpec("P")
R = TypeVar("R")


def follow_events(*, rounds: int = 5) -> FollowResult:
    """Run the handlers of every due event, incident by incident, until nothing due is left
    (a handler's own actions may announce further events). Returns the totals."""
    total = FollowResult()
    for _ in range(rounds):
        incident_ids = sorted(
            set(
                IncidentEvent.objects.filter(
                    status__in=[EventStatus.PENDING, EventStatus.RUNNING],
                    next_attempt_at__lte=timezone.now(),
                ).values_list("incident_id", flat=True)
            )
        )
        if not incident_ids:
            break
        for incident_id in incident_ids:
            result = incident_events_follow(incident_id=incident_id)
            total.handled += result.handled
            total.retrying += result.retrying
            total.failed += result.failed
            total.events_done += result.events_done
        if not total.handled and not total.events_done:
            break
    return total


def followed(action: Callable[P, R]) -> Callable[P, R]:
    """``action`` (a service), then its events followed: what a user of the running system sees
    a moment after the action committed. ``create = followed(create)`` in a test module."""

    @functools.wraps(action)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        result = action(*args, **kwargs)
        follow_events()
        return result

    return run


def pending_event() -> IncidentEvent:
    """A new incident's event as a plain work row: pending, due now, followed by nobody (for
    tests of the work-row mechanism itself)."""
    incident = incident_create(actor=None, source=Source.SYSTEM, title="Queue test", severity=4)
    event = incident.events.get()
    IncidentEvent.objects.filter(pk=event.pk).update(
        status=EventStatus.PENDING, next_attempt_at=timezone.now(), handled_at=None
    )
    event.refresh_from_db()
    return event
