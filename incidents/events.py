"""Durable incident events and the apps that follow them.

The core records what happened to an incident as an :class:`IncidentEvent` row, written by
:func:`announce` in the transaction that caused it, and nothing else runs there. Apps follow
incidents by subscribing *handlers* in ``AppConfig.ready``::

    events_subscribe(handler="escalation", event=INCIDENT_CREATED, callback=on_created)

The core never imports them. After the causing transaction commits, the incident's events are
*followed* (:func:`incident_events_follow`, run by a task kicked on commit and by a sweep that
finds kicks that were lost):

* each subscribed handler runs **once per (event, handler)**, in its own transaction, which also
  writes the :class:`EventHandling` row, UNIQUE (event, handler): the handler's writes and the
  record that it ran commit together, however many dispatchers run at once;
* in event order per incident for each handler: a handler sees an incident's
  ``incident_created`` before its ``incident_transitioned``. A later event waits while the
  same handler has an earlier event of the incident unfinished;
* a failing handler is rolled back (its writes only) and retried with backoff; it does not stop
  the other handlers of the event, nor other incidents. After its last attempt it is given up:
  a timeline entry on the incident and an alert on the admin index say so, and the events
  after it go on;
* a handler can delay its own reaction, never roll back or block an incident action.

Events, outbound notifications and inbound deliveries share one claim / lease / requeue
mechanism (:mod:`incidents.queue`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from .models import Incident, Kind, Source
from .models.events import EventHandling, EventStatus, HandlingStatus, IncidentEvent
from .queue import WorkQueue, backoff_delay

logger = logging.getLogger(__name__)

__all__ = [
    "EVENT_NAMES",
    "INCIDENT_CREATED",
    "INCIDENT_ROLE_ASSIGNED",
    "INCIDENT_SEVERITY_CHANGED",
    "INCIDENT_SLA_BREACHED",
    "INCIDENT_TRANSITIONED",
    "INCIDENT_UPDATED",
    "FollowResult",
    "announce",
    "event_handling_retry",
    "events_requeue",
    "events_subscribe",
    "events_unsubscribe",
    "incident_events_follow",
    "subscribed_handlers",
]

# payload: paging (one of incidents.services.incidents.PAGING_MODES)
INCIDENT_CREATED = "incident_created"
# payload: action, from_status, to_status
INCIDENT_TRANSITIONED = "incident_transitioned"
# payload: old_severity, new_severity
INCIDENT_SEVERITY_CHANGED = "incident_severity_changed"
# payload: role_key, user_id (None when the role was cleared)
INCIDENT_ROLE_ASSIGNED = "incident_role_assigned"
# payload: target ("response" or "resolution"), due_at (ISO 8601)
INCIDENT_SLA_BREACHED = "incident_sla_breached"
# payload: fields (names changed), previous_detected_at (ISO 8601)
INCIDENT_UPDATED = "incident_updated"

EVENT_NAMES = (
    INCIDENT_CREATED,
    INCIDENT_TRANSITIONED,
    INCIDENT_SEVERITY_CHANGED,
    INCIDENT_ROLE_ASSIGNED,
    INCIDENT_SLA_BREACHED,
    INCIDENT_UPDATED,
)

URGENT_SEVERITY = 2


# --- the registry ------------------------------------------------------------------------------


@dataclass
class Handler:
    """A follower of incidents: a stable name (recorded on every EventHandling row, so renaming
    it re-runs nothing only if the old name is kept) and one callback per event name."""

    name: str
    callbacks: dict[str, Callable[[IncidentEvent], None]] = field(default_factory=dict)


_handlers: dict[str, Handler] = {}


def events_subscribe(
    *, handler: str, event: str, callback: Callable[[IncidentEvent], None]
) -> None:
    """Subscribe ``callback`` to ``event`` under the handler name ``handler`` (call from
    ``AppConfig.ready``; subscribing again replaces the callback). The callback receives the
    :class:`IncidentEvent` row and runs inside the handler's own transaction."""
    if event not in EVENT_NAMES:
        raise ValueError(f"Unknown incident event {event!r}; known: {', '.join(EVENT_NAMES)}.")
    if not handler or len(handler) > 100:
        raise ValueError("A handler name of 1 to 100 characters is required.")
    _handlers.setdefault(handler, Handler(handler)).callbacks[event] = callback


def events_unsubscribe(*, handler: str) -> None:
    """Remove every subscription of the handler name ``handler`` (a no-op if it has none)."""
    _handlers.pop(handler, None)


def subscribed_handlers(event: str) -> list[Handler]:
    """The handlers subscribed to ``event``, in name order."""
    return [h for name, h in sorted(_handlers.items()) if event in h.callbacks]


# --- recording ---------------------------------------------------------------------------------


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
    from .tasks import incident_events_follow_task

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


# --- following ---------------------------------------------------------------------------------


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


EVENT_QUEUE = WorkQueue(
    model=IncidentEvent,
    lease=lambda: _setting("VIGIL_EVENT_LEASE_SECONDS", 90),
    requeue_after=lambda: _setting("VIGIL_EVENT_REQUEUE_AFTER_SECONDS", 10),
    # An event is not given up as a whole: its handlers are, one by one.
    max_attempts=10**6,
)

# A later event waiting for an earlier one that another dispatcher is handling right now.
BLOCKED_RECHECK = 2.0


@dataclass
class FollowResult:
    """What one call of :func:`incident_events_follow` did."""

    handled: int = 0  # (event, handler) pairs run successfully
    retrying: int = 0
    failed: int = 0
    events_done: int = 0
    next_at: datetime | None = None


def incident_events_follow(*, incident_id: int, now: datetime | None = None) -> FollowResult:
    """Run the handlers of an incident's due events, oldest first. Never inside a transaction.

    Each event is claimed with a lease (two dispatchers do not work on one event at once);
    each (event, handler) runs in a transaction of its own that records it, once. An event
    whose handlers all finished is done; one with a handler retrying, or waiting behind an
    earlier event, goes back to pending with its next attempt time, and a follow-up is queued
    for then. Safe to call any number of times, concurrently. Idempotent."""
    result = FollowResult()
    ids = list(
        IncidentEvent.objects.filter(
            incident_id=incident_id, status__in=[EventStatus.PENDING, EventStatus.RUNNING]
        )
        .order_by("id")
        .values_list("id", flat=True)[:200]
    )
    urgent = False
    # While every earlier event of this call was followed completely, a later one cannot be
    # waiting behind an earlier one: it may take the one-transaction path.
    clean = True
    for pk in ids:
        known: tuple[str, Exception] | None = None
        if clean:
            outcome = _follow_at_once(pk, now=now or timezone.now())
            if isinstance(outcome, int):
                result.handled += outcome
                result.events_done += 1
                continue
            known = outcome
        event = EVENT_QUEUE.claim(pk, now=now or timezone.now(), due_only=True)
        if event is None:
            clean = False
            continue
        urgent = urgent or event.urgent
        before = result.events_done
        _follow_event(event, result, known=known)
        clean = clean and result.events_done > before
    if result.next_at is not None:
        delay = max(0.0, (result.next_at - timezone.now()).total_seconds())
        transaction.on_commit(
            lambda: events_kick(incident_id=incident_id, urgent=urgent, countdown=delay)
        )
    return result


def _follow_at_once(pk: int, *, now: datetime) -> int | tuple[str, Exception] | None:
    """The common case in one transaction and a handful of statements: an event that no
    dispatcher has touched yet (no attempt, no handler record), due, and not locked by
    another dispatcher, runs all its handlers one after the other, and is recorded done
    with their EventHandling rows, in the transaction that holds its row lock — no lease, no
    savepoint. A worker that dies meanwhile rolls it all back, and the event is still
    pending, with no publish stamp, for the sweep (``VIGIL_EVENT_REQUEUE_AFTER_SECONDS``).

    Returns how many handlers ran when it was followed; None when the event is not such an
    event (the careful path takes it); ``(handler name, error)`` when a handler raised,
    after rolling everything back: the careful path then runs each handler in a transaction
    of its own and records this failure as the handler's attempt (it is not run twice for
    one failure)."""
    failing: list[tuple[str, Exception]] = []
    # Nothing below commits until the end: if this worker dies meanwhile, the event must look
    # like one whose kick was lost, for the sweep to queue it again soon.
    EVENT_QUEUE.mark_taken([pk], now=now)
    try:
        with transaction.atomic():
            event = (
                IncidentEvent.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=pk, status=EventStatus.PENDING, attempts=0, next_attempt_at__lte=now)
                .first()
            )
            if event is None:
                return None
            handlers = subscribed_handlers(event.name)
            for handler in handlers:
                try:
                    handler.callbacks[event.name](event)
                except Exception as exc:
                    failing.append((handler.name, exc))
                    raise
            finished = timezone.now()
            EventHandling.objects.bulk_create(
                [
                    EventHandling(
                        event=event,
                        handler=handler.name,
                        status=HandlingStatus.DONE,
                        attempts=1,
                        finished_at=finished,
                    )
                    for handler in handlers
                ]
            )
            IncidentEvent.objects.filter(pk=pk).update(
                status=EventStatus.DONE, attempts=1, handled_at=finished, last_error=""
            )
            return len(handlers)
    except Exception as exc:
        if failing:
            logger.info(
                "Handler %s failed on event %s; following it handler by handler",
                failing[0][0],
                pk,
            )
            return failing[0]
        # The bookkeeping itself failed (a concurrent dispatcher's record, a lost
        # connection): the careful path decides what is left to do.
        logger.warning("Event %s could not be followed at once: %s", pk, exc)
        return None


def _follow_event(
    event: IncidentEvent, result: FollowResult, *, known: tuple[str, Exception] | None = None
) -> None:
    claim = event.claimed_at
    waiting: list[datetime] = []
    gave_up = False
    for handler in subscribed_handlers(event.name):
        try:
            outcome, when = _run_handler(
                event, handler, failure=known[1] if known and known[0] == handler.name else None
            )
        except Exception:
            # The handler's transaction itself broke (a lost connection): nothing was recorded;
            # the event's lease runs out and the sweep queues it again.
            logger.exception("Handler %s of event %s could not be recorded", handler.name, event.pk)
            return
        if outcome == HandlingStatus.DONE:
            result.handled += 1
        elif outcome == HandlingStatus.FAILED:
            gave_up = True
            result.failed += 1
        else:
            result.retrying += outcome == HandlingStatus.RETRYING
            waiting.append(when)
    now = timezone.now()
    with transaction.atomic():
        locked = IncidentEvent.objects.select_for_update(of=("self",)).get(pk=event.pk)
        if locked.status != EventStatus.RUNNING or locked.claimed_at != claim:
            return
        if waiting:
            locked.status = EventStatus.PENDING
            locked.next_attempt_at = min(waiting)
            locked.save(update_fields=["status", "next_attempt_at"])
            if result.next_at is None or locked.next_attempt_at < result.next_at:
                result.next_at = locked.next_attempt_at
            return
        locked.status = EventStatus.FAILED if gave_up else EventStatus.DONE
        locked.handled_at = now
        locked.last_error = ""
        locked.save(update_fields=["status", "handled_at", "last_error"])
        result.events_done += 1


def _blocked(event: IncidentEvent, handler: Handler, *, soon: datetime) -> datetime | None:
    """When to look again if an earlier, unfinished event of the incident awaits this handler
    (its retry time, or ``soon`` if another dispatcher holds it); None when nothing does."""
    finished = EventHandling.objects.filter(
        event=OuterRef("pk"),
        handler=handler.name,
        status__in=[HandlingStatus.DONE, HandlingStatus.FAILED],
    )
    earlier = (
        IncidentEvent.objects.filter(
            incident_id=event.incident_id,
            id__lt=event.pk,
            status__in=[EventStatus.PENDING, EventStatus.RUNNING],
            name__in=list(handler.callbacks),
        )
        .exclude(Exists(finished))
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )
    if earlier is None:
        return None
    retry_at = (
        EventHandling.objects.filter(event_id=earlier, handler=handler.name)
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return max(retry_at, soon) if retry_at else soon


def _handler_settings() -> tuple[int, float, float]:
    return (
        max(1, int(_setting("VIGIL_EVENT_MAX_ATTEMPTS", 6))),
        _setting("VIGIL_EVENT_BACKOFF_BASE_SECONDS", 5),
        _setting("VIGIL_EVENT_BACKOFF_MAX_SECONDS", 300),
    )


def _run_handler(
    event: IncidentEvent, handler: Handler, *, failure: Exception | None = None
) -> tuple[str, datetime]:
    """Run one handler on one event in its own transaction. Returns (outcome, when to look
    again): done, failed (given up), retrying (at its next attempt) or waiting (behind an
    earlier event, or held by another dispatcher)."""
    now = timezone.now()
    soon = now + timedelta(seconds=BLOCKED_RECHECK)
    with transaction.atomic():
        row = (
            EventHandling.objects.select_for_update()
            .filter(event=event, handler=handler.name)
            .first()
        )
        if row is not None and row.status in (HandlingStatus.DONE, HandlingStatus.FAILED):
            return row.status, now
        if row is not None and row.next_attempt_at and row.next_attempt_at > now:
            return HandlingStatus.RETRYING, row.next_attempt_at
        blocked_until = _blocked(event, handler, soon=soon)
        if blocked_until is not None:
            return "waiting", blocked_until
        if row is None:
            try:
                with transaction.atomic():
                    row = EventHandling.objects.create(
                        event=event, handler=handler.name, status=HandlingStatus.RETRYING
                    )
            except IntegrityError:
                # Another dispatcher ran it and committed meanwhile (its insert held ours).
                return "waiting", now
        row.attempts += 1
        try:
            if failure is not None:
                # It already failed on this event in the one-transaction path (rolled back):
                # that was this attempt.
                raise failure
            with transaction.atomic():
                handler.callbacks[event.name](event)
        except Exception as exc:
            logger.exception(
                "Handler %s failed on event %s (%s) of incident %s, attempt %s",
                handler.name,
                event.pk,
                event.name,
                event.incident_id,
                row.attempts,
            )
            return _handler_failed(event, handler, row, exc, now), row.next_attempt_at or now
        row.status = HandlingStatus.DONE
        row.finished_at = timezone.now()
        row.last_error = ""
        row.next_attempt_at = None
        row.save(
            update_fields=["status", "attempts", "finished_at", "last_error", "next_attempt_at"]
        )
        return HandlingStatus.DONE, now


def _handler_failed(
    event: IncidentEvent, handler: Handler, row: EventHandling, exc: Exception, now: datetime
) -> str:
    from .services.common import timeline_record

    max_attempts, base, ceiling = _handler_settings()
    row.last_error = f"{type(exc).__name__}: {exc}"[:4000]
    if row.attempts >= max_attempts:
        row.status = HandlingStatus.FAILED
        row.finished_at = now
        row.next_attempt_at = None
        timeline_record(
            incident=event.incident,
            kind=Kind.SYSTEM,
            source=Source.SYSTEM,
            actor=None,
            message=(
                f"{handler.name} could not follow {event.name.replace('_', ' ')} after "
                f"{row.attempts} attempts and gave up: {row.last_error}"
            ),
            data={"event": event.pk, "handler": handler.name, "attempts": row.attempts},
        )
    else:
        row.status = HandlingStatus.RETRYING
        row.next_attempt_at = now + timedelta(
            seconds=backoff_delay(attempts=row.attempts, base=base, ceiling=ceiling)
        )
    row.save(update_fields=["status", "attempts", "last_error", "finished_at", "next_attempt_at"])
    return row.status


# --- recovery and operator actions -------------------------------------------------------------


def events_requeue(*, now: datetime | None = None) -> int:
    """Queue again the following of events whose kick was lost (pending past their next
    attempt by ``VIGIL_EVENT_REQUEUE_AFTER_SECONDS``) or whose dispatcher died (running past
    the lease). One task per incident. Safe to run twice at once. Returns how many incidents
    were queued."""
    with transaction.atomic():
        ids = EVENT_QUEUE.requeue(now=now, order="id")
        # Urgent rows first, and an incident's first row decides: an incident with any urgent
        # event (a Sev 4 raised to Sev 1) goes back on the urgent queue.
        incidents: dict[int, bool] = {}
        for incident_id, urgent in (
            IncidentEvent.objects.filter(pk__in=ids)
            .order_by("-urgent", "id")
            .values_list("incident_id", "urgent")
        ):
            incidents.setdefault(incident_id, urgent)
        for incident_id, urgent in incidents.items():
            transaction.on_commit(
                lambda i=incident_id, u=urgent: events_kick(incident_id=i, urgent=u)
            )
    if incidents:
        logger.info("Re-queued the events of %s incident(s)", len(incidents))
    return len(incidents)


@transaction.atomic
def event_handling_retry(*, handling: EventHandling) -> bool:
    """Run a given-up handler again (the admin's "retry"), with a fresh attempt budget, and
    put its event back to pending. Returns False (changing nothing) unless it had failed."""
    locked = EventHandling.objects.select_for_update().select_related("event").get(pk=handling.pk)
    if locked.status != HandlingStatus.FAILED:
        return False
    locked.status = HandlingStatus.RETRYING
    locked.attempts = 0
    locked.next_attempt_at = None
    locked.finished_at = None
    locked.save(update_fields=["status", "attempts", "next_attempt_at", "finished_at"])
    event = IncidentEvent.objects.select_for_update().get(pk=locked.event_id)
    event.status = EventStatus.PENDING
    event.next_attempt_at = timezone.now()
    event.handled_at = None
    event.save(update_fields=["status", "next_attempt_at", "handled_at"])
    incident_id, urgent = event.incident_id, event.urgent
    transaction.on_commit(lambda: events_kick(incident_id=incident_id, urgent=urgent))
    return True
