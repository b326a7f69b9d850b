"""Following an incident's events: each subscribed handler run once per (event, handler), in
its own transaction, in event order per incident, retried with backoff and given up after its
last attempt (a timeline entry says so)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ..models import Incident, Kind, Source
from ..models.events import EventHandling, EventStatus, HandlingStatus, IncidentEvent
from ..queue import backoff_delay
from .follow_statements import due_events, event_done, event_lock_fresh
from .recording import EVENT_QUEUE, events_kick, setting
from .registry import Handler, subscribed_handlers

logger = logging.getLogger(__name__)

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
    ids, first_taken = due_events(incident_id, now=now or timezone.now())
    urgent = False
    # While every earlier event of this call was followed completely, a later one cannot be
    # waiting behind an earlier one: it may take the one-transaction path.
    clean = True
    for pk in ids:
        known: tuple[str, Exception] | None = None
        if clean:
            taken = first_taken and pk == ids[0]
            outcome = _follow_at_once(pk, now=now or timezone.now(), taken=taken)
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


def event_incident(event: IncidentEvent) -> Incident:
    """The event's incident (with its severity), for a handler to work on: read once per event
    followed, and shared by its handlers (an event followed at once reads it with the event
    row). Handlers react to an incident's change; they never write the incident row (a change
    to an incident goes through the incidents services, which record an event of its own), so
    the one read stays true for each of them. A handler must not change the instance either:
    one that needs a variant of it works on a copy."""
    cache = event._state.fields_cache
    incident = cache.get("incident")
    if incident is None:
        incident = Incident.objects.select_related("severity").get(pk=event.incident_id)
        cache["incident"] = incident
    return incident


def _follow_at_once(
    pk: int, *, now: datetime, taken: bool = False
) -> int | tuple[str, Exception] | None:
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
    one failure). ``taken``: the event was taken up already (``due_events``)."""
    failing: list[tuple[str, Exception]] = []
    # Nothing below commits until the end: if this worker dies meanwhile, the event must look
    # like one whose kick was lost, for the sweep to queue it again soon.
    if not taken:
        EVENT_QUEUE.mark_taken([pk], now=now)
    try:
        with transaction.atomic():
            event = event_lock_fresh(pk, now=now)
            if event is None:
                return None
            handlers = subscribed_handlers(event.name)
            for handler in handlers:
                try:
                    handler.callbacks[event.name](event)
                except Exception as exc:
                    failing.append((handler.name, exc))
                    raise
            event_done(pk, handlers=[h.name for h in handlers], finished=timezone.now())
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
        max(1, int(setting("VIGIL_EVENT_MAX_ATTEMPTS", 6))),
        setting("VIGIL_EVENT_BACKOFF_BASE_SECONDS", 5),
        setting("VIGIL_EVENT_BACKOFF_MAX_SECONDS", 300),
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
    from ..services.common import timeline_record

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
