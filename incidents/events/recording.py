"""Recording an incident event in the transaction that caused it, and queueing the following
of an incident's events after that transaction commits (the events' work queue and the Celery
queues the following runs on)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..bulk import rows_insert
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
    followed = _followed(name)
    event = _event(
        name, incident, followed=followed, source=source, actor_id=actor_id, payload=payload
    )
    event.save(force_insert=True)
    if followed:
        incident_id, urgent = incident.pk, event.urgent
        if not _collect(incident_id, urgent):
            transaction.on_commit(lambda: events_kick(incident_id=incident_id, urgent=urgent))
    return event


def _followed(name: str) -> bool:
    if name not in EVENT_NAMES:
        raise ValueError(f"Unknown incident event {name!r}.")
    return bool(subscribed_handlers(name))


def _event(
    name: str,
    incident: Incident,
    *,
    followed: bool,
    source: str,
    actor_id: int | None,
    payload: dict[str, Any],
) -> IncidentEvent:
    """The event's row, not saved: pending for its handlers, or handled at once when no
    handler follows it."""
    now = timezone.now()
    return IncidentEvent(
        incident=incident,
        name=name,
        payload=payload,
        actor_id=actor_id,
        source=source,
        occurred_at=now,
        urgent=_is_urgent(incident),
        status=EventStatus.PENDING if followed else EventStatus.DONE,
        next_attempt_at=now,
        handled_at=None if followed else now,
    )


def announce_many(name: str, items: list[tuple[Incident, dict[str, Any]]]) -> list[IncidentEvent]:
    """:func:`announce` for many incidents at once, in one INSERT: ``items`` holds (incident,
    keyword arguments of ``announce``: ``source``, ``actor_id`` and the payload)."""
    followed = _followed(name)
    events = []
    for incident, options in items:
        payload = dict(options)
        source = payload.pop("source", Source.SYSTEM)
        actor_id = payload.pop("actor_id", None)
        events.append(
            _event(
                name, incident, followed=followed, source=source, actor_id=actor_id, payload=payload
            )
        )
    rows_insert(events)
    if followed:
        for event in events:
            if not _collect(event.incident_id, event.urgent):
                transaction.on_commit(
                    lambda i=event.incident_id, u=event.urgent: events_kick(incident_id=i, urgent=u)
                )
    return events


def _is_urgent(incident: Incident) -> bool:
    return bool(incident.severity_id and incident.severity_id <= URGENT_SEVERITY)


def _collect(incident_id: int, urgent: bool) -> bool:
    """Inside a :func:`kicks_collected` block, note the incident for its one kick and return
    True; outside, False (the caller queues its own kick after commit)."""
    collected = _collected.get()
    if collected is None:
        return False
    collected[incident_id] = collected.get(incident_id, False) or urgent
    return True


# The incidents whose events were announced inside :func:`kicks_collected`, each with whether
# any of them is urgent.
_collected: ContextVar[dict[int, bool] | None] = ContextVar("vigil_event_kicks", default=None)


@contextlib.contextmanager
def kicks_collected() -> Iterator[None]:
    """Inside a transaction that announces events of many incidents (a drain's batch of
    deliveries): their followings are queued as one task per queue for all of them after the
    transaction commits (:func:`events_kick_many`), instead of one task per incident. Nothing is
    queued when the block raises (the transaction rolls back with the events). Nested, the
    outer block queues."""
    if _collected.get() is not None:
        yield
        return
    collected: dict[int, bool] = {}
    token = _collected.set(collected)
    try:
        yield
    finally:
        _collected.reset(token)
    for urgent in (True, False):
        ids = [pk for pk, is_urgent in collected.items() if is_urgent is urgent]
        if ids:
            transaction.on_commit(lambda ids=ids, u=urgent: events_kick_many(ids, urgent=u))


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


def events_kick_many(incident_ids: list[int], *, urgent: bool) -> bool:
    """Queue one task that follows the events of these incidents, one incident after the
    other (after commit), and stamp their pending events published. A broker failure is
    logged, not raised: the events are stored and the sweep queues them again."""
    from ..tasks import incident_events_follow_many_task

    if not incident_ids:
        return True
    options: dict[str, Any] = {"queue": urgent_queue() if urgent else default_queue()}
    if len(incident_ids) > 1:
        # Behind the queue's single-incident work: a Sev 1 logged on its own, and the pages of
        # incidents already followed, are not queued behind a storm's stream of incidents.
        options["priority"] = MANY_PRIORITY
    try:
        incident_events_follow_many_task.apply_async(args=[incident_ids, urgent], **options)
    except Exception:
        logger.exception(
            "Could not queue the events of %s incident(s); the sweep will", len(incident_ids)
        )
        return False
    try:
        EVENT_QUEUE.mark_published(
            incident_id__in=incident_ids, status=EventStatus.PENDING, published_at__isnull=True
        )
    except Exception:
        logger.exception("Could not mark the events of %s incident(s) published", len(incident_ids))
    return True


# The broker priority of a task following several incidents' events. On Redis, 0 (a message
# without priority) is taken first, then 3, 6 and 9 (Kombu's priority steps) within each queue;
# the embedded filesystem broker takes 0 to 9 in order (config/broker.py).
MANY_PRIORITY = 6

# How long one task following many incidents' events works before it queues the rest and ends,
# so a Sev 1 paged meanwhile waits behind one such slice, not behind a whole storm.
FOLLOW_MANY_BUDGET = 0.5


def incidents_events_follow_many(
    incident_ids: list[int], *, urgent: bool, budget_seconds: float = FOLLOW_MANY_BUDGET
) -> int:
    """Follow the due events of these incidents, one incident after the other, for at most
    ``budget_seconds``; the incidents not reached are queued again in a task of their own
    at the back of the queue. Returns how many handlers ran. Idempotent, as each incident's
    following is."""
    from .following import incident_events_follow

    deadline = time.monotonic() + budget_seconds
    handled = 0
    for n, incident_id in enumerate(incident_ids):
        if n and time.monotonic() > deadline:
            events_kick_many(list(incident_ids[n:]), urgent=urgent)
            break
        handled += incident_events_follow(incident_id=incident_id).handled
    return handled


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
