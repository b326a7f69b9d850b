"""Delivering the outbox's messages: claim a row, send it through its channel, record the
result; retries with backoff, the requeue sweep that recovers lost work, and the operator's
"retry now". The module docstring of :mod:`escalation.services.outbox` states the guarantees."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from incidents.models import Incident, Kind, MessageChannel, Source
from incidents.services.common import timeline_record

from ..models import Notification, NotificationStatus
from .outbox import OUTBOX, batch_tasks_publish, outbox_settings, row_queue, send_task_publish

logger = logging.getLogger(__name__)

__all__ = [
    "SendOutcome",
    "backoff_delay",
    "notification_retry",
    "notification_send",
    "notification_send_batch",
    "notifications_requeue",
]


# --- deliver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt to send did: ``sent``, ``retry``, ``failed`` or ``skipped``."""

    result: str
    notification_id: int
    attempts: int = 0
    detail: str = ""
    retry_in: float | None = None


def backoff_delay(*, attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt (the outbox's tuning of ``incidents.queue``): never
    sooner than the provider's own ``Retry-After``, up to the longest backoff — a page held
    back for hours is worth less than an attempt that may fail again and, on the last one,
    raise the alert."""
    return OUTBOX.delay(attempts=attempts, retry_after=retry_after)


def notification_send_batch(*, notification_ids: list[int]) -> int:
    """Send the rows of one batch task; returns how many were sent.

    First their publish stamp is cleared (and their next attempt set to now): if this worker
    dies midway, the rows it did not reach look like rows whose publish was lost and the
    requeue sweep publishes them again after ``VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS``, instead
    of after the publish lease. Then ``VIGIL_NOTIFY_SEND_CHUNK`` rows at a time are claimed in one
    statement, sent one after the other, and their sends recorded in one statement (a row whose
    send fails is recorded at once, on its own, as in :func:`notification_send`). A chunk that
    has used half the lease gives its unsent rows back and claims them again, so a slow
    provider never lets a claim lapse while its row waits its turn. The sends of a chunk are
    recorded after its last one, so a worker killed mid-chunk leaves up to a chunk of sent
    rows unrecorded: they are sent again, with the same idempotency key, after the lease.

    The rows of a chunk whose send failed and wait for their backoff go out again together
    too: one batch task per queue and span of delays (:func:`_retries_publish`), published as
    the chunk ends, not a one-row task each (in an outage of a provider every page of a storm
    fails)."""
    OUTBOX.mark_taken(notification_ids)
    # The pages of one batch are mostly one incident's: read it once, not once per row.
    incidents: dict[int, Incident] = {}
    conf = outbox_settings()
    half_lease, size = conf.lease.total_seconds() / 2, conf.send_chunk
    waiting = list(notification_ids)
    sent = 0
    while waiting:
        chunk, waiting = waiting[:size], waiting[size:]
        rows = OUTBOX.claim_many(chunk, related="incident")
        if not rows:
            continue
        claim = rows[0].claimed_at
        started = time.monotonic()
        done: dict[int, dict] = {}
        retries: list[tuple[int, str, float]] = []
        reached = 0
        try:
            for row in rows:
                if reached and time.monotonic() - started > half_lease:
                    waiting = [later.pk for later in rows[reached:]] + waiting
                    break
                reached += 1
                _share_incident(row, incidents)
                provider_id, failure = _attempt(row, claim=claim, retries=retries)
                if failure is None:
                    done[row.pk] = {
                        "provider_message_id": (provider_id or "")[:255],
                        "sent_at": timezone.now(),
                    }
        finally:
            # Also when an error stops the chunk: what was sent is recorded, and what was not
            # reached is given back (claimable again at once, not only after the lease).
            try:
                _recorded(
                    lambda done=done, claim=claim: OUTBOX.complete_many(done, claim=claim),
                    what=f"Notification(s) {', '.join(str(pk) for pk in done)}",
                )
                OUTBOX.release([row.pk for row in rows[reached:]], claim=claim)
            finally:
                # The failures are committed: their retries go out even if recording failed.
                _retries_publish(retries)
        sent += len(done)
    return sent


def _share_incident(row: Notification, incidents: dict[int, Incident]) -> None:
    if row.incident_id is None:
        return
    if row.incident_id in incidents:
        row.incident = incidents[row.incident_id]
    else:
        incidents[row.incident_id] = row.incident


def notification_send(*, notification_id: int) -> SendOutcome:
    """Send one outbox row through its channel backend. Safe to call any number of times.

    Claims the row in one statement (pending, or sending with an expired lease → sending,
    attempts + 1, committed on its own); calls the channel outside any transaction; then
    records the result: sent with the provider's message id in one statement that matches
    this claim only (a stale claim records nothing); under a fresh lock, a transient error back to
    pending with exponential backoff (and a retry published after commit); a permanent error,
    or a transient one on the last attempt, failed with a timeline entry on the incident.
    A failure is recorded only while this attempt's claim is current, so a worker that lost its
    lease cannot overwrite a newer attempt. If the database refuses the write that records a
    send, the write is tried again for a few seconds, then the error is raised: the row stays
    sending and is sent again, with the same idempotency key, after the lease.
    """
    # One UPDATE … RETURNING claims the row; on PostgreSQL the incident a channel shows comes
    # with it, in the same round trip.
    row = OUTBOX.claim(notification_id, related="incident")
    if row is None:
        return SendOutcome("skipped", notification_id)
    provider_id, failure = _attempt(row, claim=row.claimed_at)
    if failure is not None:
        return failure
    provider_id = (provider_id or "")[:255]
    sent_at = timezone.now()
    _recorded(
        lambda: OUTBOX.complete(row, provider_message_id=provider_id, sent_at=sent_at),
        what=f"Notification {row.pk}",
    )
    return SendOutcome("sent", row.pk, attempts=row.attempts, detail=provider_id)


def _attempt(
    row: Notification, *, claim: datetime, retries: list[tuple[int, str, float]] | None = None
) -> tuple[str | None, SendOutcome | None]:
    """Send a claimed row through its channel, outside any transaction. Returns the provider's
    message id, or the outcome of the failure it recorded (a retry's task published after
    commit, or with ``retries`` noted there for the caller to publish)."""
    from ..channels import PermanentDeliveryError, TransientDeliveryError, backend_for

    try:
        backend = backend_for(row.channel)
        return backend.send(row), None
    except PermanentDeliveryError as exc:
        return None, _record_failure(row, claim=claim, error=str(exc) or repr(exc), permanent=True)
    except TransientDeliveryError as exc:
        return None, _record_failure(
            row,
            claim=claim,
            error=str(exc) or repr(exc),
            retry_after=exc.retry_after,
            retries=retries,
        )
    except Exception as exc:
        # An unexpected error (a bug, a library surprise, the soft time limit) is retried:
        # giving up on a page after one odd exception is worse than trying again.
        logger.exception("Notification %s: unexpected delivery error", row.pk)
        return None, _record_failure(
            row, claim=claim, error=f"{type(exc).__name__}: {exc}", retries=retries
        )


# Pauses between the tries of the write that records a send. The message is already with the
# provider: giving up on this write means sending it again after the lease, so a database that
# is away for a moment (a failover, a dropped connection) is waited for, briefly.
RECORD_RETRY_DELAYS = (0.5, 1.0, 2.0)


def _recorded(write: Callable[[], object], *, what: str) -> None:
    """Run the write that records sends, trying again through a short database outage."""
    for pause in (*RECORD_RETRY_DELAYS, None):
        try:
            write()
            return
        except (OperationalError, InterfaceError):
            if pause is None:
                logger.error(
                    "%s accepted by the provider but could not be recorded; sent again, with "
                    "the same idempotency key, after the lease",
                    what,
                )
                raise
            logger.warning("%s: recording the send failed; trying again", what)
            time.sleep(pause)
            if not connection.in_atomic_block:
                # A broken connection is replaced on the next query.
                connection.close_if_unusable_or_obsolete()


def _record_failure(
    row: Notification,
    *,
    claim: datetime,
    error: str,
    permanent: bool = False,
    retry_after: float | None = None,
    retries: list[tuple[int, str, float]] | None = None,
) -> SendOutcome:
    conf = outbox_settings()
    error = error[:2000]
    retry: tuple[int, str, float] | None = None
    with transaction.atomic():
        failure = OUTBOX.fail(
            row,
            claim=claim,
            error=error,
            permanent=permanent,
            retry_after=retry_after,
            related=("incident", "contact"),
        )
        locked = failure.row
        if failure.outcome == "superseded":
            return SendOutcome(
                "skipped", row.pk, attempts=locked.attempts, detail="claim superseded"
            )
        if failure.outcome == "failed":
            locked.failed_at = timezone.now()
            locked.save(update_fields=["failed_at"])
            _timeline_failure(locked, error=error, permanent=permanent)
            logger.warning(
                "Notification %s to %s by %s failed after %s attempt(s): %s",
                locked.pk,
                locked.recipient,
                locked.channel,
                locked.attempts,
                error,
            )
            return SendOutcome("failed", row.pk, attempts=locked.attempts, detail=error)
        delay = failure.delay
        if delay <= conf.max_countdown:
            # Longer waits are left to the requeue sweep: a broker ETA far in the future can be
            # redelivered early by Redis once it exceeds the visibility timeout.
            urgent, bulk = locked.urgent, locked.bulk
            if retries is None:
                transaction.on_commit(
                    lambda: send_task_publish(row.pk, urgent=urgent, bulk=bulk, countdown=delay)
                )
            else:
                retry = (row.pk, row_queue(urgent=urgent, bulk=bulk), delay)
    if retry is not None:
        # Once this transaction (the outermost one in a worker) has committed: the batch
        # task publishes it with the chunk's other retries.
        retries.append(retry)
    return SendOutcome("retry", row.pk, attempts=locked.attempts, detail=error, retry_in=delay)


def _retries_publish(retries: list[tuple[int, str, float]]) -> None:
    """Publish the retries of a batch task's chunk: per queue, the rows whose delays lie within
    twice the shortest of them plus a second go in one batch task, due at the longest (the
    backoff's jitter spans a factor of two, so the rows of one attempt stay together, and none
    waits more than twice its own delay and a second). Never raises: a retry whose publish
    fails stays unmarked, and the requeue sweep publishes it after
    ``VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS``."""
    by_queue: dict[str, list[tuple[float, int]]] = {}
    for pk, queue, delay in retries:
        by_queue.setdefault(queue, []).append((delay, pk))
    for queue, waiting in by_queue.items():
        waiting.sort()
        groups: list[list[tuple[float, int]]] = []
        for delay, pk in waiting:
            if groups and delay <= 2 * groups[-1][0][0] + 1:
                groups[-1].append((delay, pk))
            else:
                groups.append([(delay, pk)])
        for group in groups:
            try:
                batch_tasks_publish([([pk for _, pk in group], queue)], countdown=group[-1][0])
            except Exception:
                logger.exception("Could not queue the retries of %s notification(s)", len(group))


def _timeline_failure(row: Notification, *, error: str, permanent: bool) -> None:
    if row.incident is None:
        return
    who = row.contact.name if row.contact_id and row.contact else row.recipient
    how = MessageChannel(row.channel).label
    attempts = "1 attempt" if row.attempts == 1 else f"{row.attempts} attempts"
    timeline_record(
        incident=row.incident,
        kind=Kind.NOTIFICATION,
        source=Source.SYSTEM,
        actor=None,
        message=f"Notification to {who} by {how} failed after {attempts}: {error}",
        data={
            "notification": row.pk,
            "channel": row.channel,
            "recipient": row.recipient,
            "reason": row.reason,
            "attempts": row.attempts,
            "permanent": permanent,
        },
    )


# --- recovery and operator actions -----------------------------------------------------------


def notifications_requeue(*, now: datetime | None = None) -> int:
    """Re-publish deliveries that were lost: pending rows whose task was never published (the
    publish failed, or the process died before it) ``VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS`` after
    they were due, pending rows published longer ago than ``VIGIL_PUBLISH_LEASE_SECONDS`` (the
    message is presumed lost), and rows left sending past the lease (the worker died mid-send;
    back to pending, the attempt counted). A row whose task is still waiting in a queue is
    left alone, so a backlog is never doubled.
    Returns how many were re-queued. Safe to run twice at once (``incidents.queue``); the
    claims in :func:`notification_send_batch` make any duplicate task harmless.

    They go out as batch tasks of up to 50 rows per queue, as pages are first published, not
    one task per row: after a broker lost its queues, the rows it lost are sent at the batch
    tasks' rate, with one broker message per 50."""
    conf = outbox_settings()
    with transaction.atomic():
        due = OUTBOX.requeue(now=now, batch=conf.requeue_batch)
        # Each back on its own queue: a page of a Sev 1-2 incident on the urgent one, a
        # mailing's message on the bulk one (a lost mailing never lands in front of pages).
        queues: dict[str, list[int]] = {}
        rows = Notification.objects.filter(pk__in=due).order_by("pk")
        for pk, urgent, bulk in rows.values_list("pk", "urgent", "bulk"):
            queues.setdefault(row_queue(urgent=urgent, bulk=bulk), []).append(pk)
        if queues:
            groups = [(ids, queue) for queue, ids in queues.items()]
            transaction.on_commit(lambda: batch_tasks_publish(groups))
    if due:
        logger.info("Re-queued %s notification(s)", len(due))
    return len(due)


def notification_retry(*, notification: Notification, actor: Any, source: str) -> bool:
    """Send a failed or waiting notification again now (the admin's "retry now").

    A failed row gets a fresh attempt budget; the retry is written on the incident's timeline
    naming the actor. Returns False (and changes nothing) for a row already sent or being sent.
    """
    with transaction.atomic():
        locked = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("incident", "contact")
            .get(pk=notification.pk)
        )
        was_failed = locked.status == NotificationStatus.FAILED
        if not OUTBOX.retry_now(locked, fresh=True):
            return False
        if was_failed:
            locked.failed_at = None
            locked.save(update_fields=["failed_at"])
        if locked.incident is not None:
            who = locked.contact.name if locked.contact else locked.recipient
            timeline_record(
                incident=locked.incident,
                kind=Kind.NOTIFICATION,
                source=source,
                actor=actor,
                message=(
                    f"Notification to {who} by {MessageChannel(locked.channel).label} "
                    f"sent again by hand{' after it failed' if was_failed else ''}."
                ),
                data={"notification": locked.pk, "retry": True},
            )
        pk, urgent, bulk = locked.pk, locked.urgent, locked.bulk
        transaction.on_commit(lambda: send_task_publish(pk, urgent=urgent, bulk=bulk))
    return True
