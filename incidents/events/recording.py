"""Recording an incident event in the transaction that caused it, and queueing the following
of an incident's events after that transaction commits (the events' work queue and the Celery
queues the following runs on)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Incident, Source
from ..models.events import EventStatus, IncidentEvent
from ..queue import WorkQueue
from .registry import EVENT_NAMES, subscribed_handlers

logger = logging.getLogger(__name__)

URGENT_SEVERITY = 2


def announce(
    name: str,
    *,
    incident: Incident,
    source: str = Source.SYSTEM,
    actor_id: int | None = None,
    **payload: Any,
) -> IncidentEvent:
    """Record an event of ``incident`` in the CURRENT transaction (the causing one) and, after
    it commits, kick its followers. ``payload`` holds ids and plain values only (it is stored
    as JSON). Nothing else runs here: a follower's error cannot roll the action back.

    An event no handler follows is stored as handled at once (it is still the audit of what
    happened, and later handlers do not replay history)."""
    if name not in EVENT_NAMES:
        raise ValueError(f"Unknown incident event {name!r}.")
    now = timezone.now()
    followed = bool(subscribed_handlers(name))
    urgent = bool(incident.severity_id and incident.severity_id <= URGENT_SEVERITY)
    event = IncidentEvent.objects.create(
        incident=incident,
        name=name,
        payload=payload,
        actor_id=actor_id,
        source=source,
        occurred_at=now,
        urgent=urgent,
        status=EventStatus.PENDING if followed else EventStatus.DONE,
        next_attempt_at=now,
        handled_at=None if followed else now,
    )
    if followed:
        incident_id = incident.pk
        transaction.on_commit(lambda: events_kick(incident_id=incident_id, urgent=urgent))
    return event


def events_kick(*, incident_id: int, urgent: bool, countdown: float | None = None) -> bool:
    """Queue the following of an incident's events (after commit). A broker failure is logged,
    not raised: the events are stored and the sweep queues them again."""
    from ..tasks import incident_events_follow_task

    options: dict[str, Any] = {"queue": urgent_queue() if urgent else default_queue()}
    if countdown:
        options["countdown"] = countdown
    try:
        incident_events_follow_task.apply_async(args=[incident_id], **options)
    except Exception:
        logger.exception("Could not queue the events of incident %s; the sweep will", incident_id)
        return False
    # The task will look at every pending event of the incident: the sweep leaves them to it
    # until the publish lease runs out (incidents.queue), instead of queueing another task
    # every run while this one waits in a long queue.
    try:
        EVENT_QUEUE.mark_published(
            incident_id=incident_id, status=EventStatus.PENDING, published_at__isnull=True
        )
    except Exception:
        logger.exception("Could not mark the events of incident %s published", incident_id)
    return True


def urgent_queue() -> str:
    return getattr(settings, "VIGIL_URGENT_QUEUE", "vigil.urgent")


def default_queue() -> str:
    return getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "vigil")


def setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


EVENT_QUEUE = WorkQueue(
    model=IncidentEvent,
    lease=lambda: setting("VIGIL_EVENT_LEASE_SECONDS", 90),
    requeue_after=lambda: setting("VIGIL_EVENT_REQUEUE_AFTER_SECONDS", 10),
    # An event is not given up as a whole: its handlers are, one by one.
    max_attempts=10**6,
)
