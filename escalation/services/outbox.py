"""The notification outbox: enqueue in the causing transaction, deliver after commit, retry
transient failures with backoff, fail permanent ones at once, and recover lost work.

Delivery is at-least-once towards the provider and exactly-once in Vigil's records: the row's
unique idempotency key means one row per logical notification, the row lock means one worker
delivers it at a time, and the key travels with every attempt so the receiver can recognise a
repeat. A repeat happens when an attempt reached the provider but its result never reached the
row: the worker died (or the database stayed unreachable) between the provider's answer and the
write that records it, or the provider accepted a request whose answer timed out. After the
lease the row is sent again, unchanged, with the same key: email as the same Message-ID, the
outbound webhook with the same ``Idempotency-Key``; Slack, Teams and Twilio take no key, so
there the person gets the message twice. Vigil resends rather than risk a page nobody got.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from incidents.bulk import rows_insert
from incidents.events import default_queue, urgent_queue
from incidents.models import Contact, Incident
from incidents.queue import WorkQueue

from ..models import Notification, NotificationStatus
from .message_checks import EMAIL_HEADERS, message_checked
from .recipients import contact_ids_known

logger = logging.getLogger(__name__)

__all__ = [
    "EMAIL_HEADERS",
    "OutboxMessage",
    "batch_tasks_publish",
    "notification_enqueue",
    "notification_enqueue_many",
    "outbox_settings",
    "send_task_publish",
]


@dataclass(frozen=True)
class OutboxSettings:
    max_attempts: int
    backoff_base: float
    backoff_max: float
    max_countdown: float
    lease: timedelta
    requeue_after: timedelta
    requeue_batch: int
    send_chunk: int


def outbox_settings() -> OutboxSettings:
    """The outbox's tuning, read from settings at call time (tests override it)."""
    return OutboxSettings(
        max_attempts=max(1, int(getattr(settings, "VIGIL_NOTIFY_MAX_ATTEMPTS", 6))),
        backoff_base=float(getattr(settings, "VIGIL_NOTIFY_BACKOFF_BASE_SECONDS", 10)),
        backoff_max=float(getattr(settings, "VIGIL_NOTIFY_BACKOFF_MAX_SECONDS", 600)),
        max_countdown=float(getattr(settings, "VIGIL_NOTIFY_MAX_COUNTDOWN_SECONDS", 900)),
        lease=timedelta(seconds=float(getattr(settings, "VIGIL_NOTIFY_LEASE_SECONDS", 120))),
        requeue_after=timedelta(
            seconds=float(getattr(settings, "VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS", 60))
        ),
        requeue_batch=int(getattr(settings, "VIGIL_NOTIFY_REQUEUE_BATCH", 500)),
        send_chunk=max(1, int(getattr(settings, "VIGIL_NOTIFY_SEND_CHUNK", 10))),
    )


# The outbox is one of Vigil's work tables (``incidents.queue``): pending → sending → sent, or
# failed; a sending claim is a lease; the requeue sweep recovers lost tasks and dead workers.
OUTBOX = WorkQueue(
    model=Notification,
    pending=NotificationStatus.PENDING,
    running=NotificationStatus.SENDING,
    done=NotificationStatus.SENT,
    failed=NotificationStatus.FAILED,
    lease=lambda: outbox_settings().lease.total_seconds(),
    max_attempts=lambda: outbox_settings().max_attempts,
    backoff_base=lambda: outbox_settings().backoff_base,
    backoff_max=lambda: outbox_settings().backoff_max,
    requeue_after=lambda: outbox_settings().requeue_after.total_seconds(),
)


# --- enqueue ---------------------------------------------------------------------------------


def notification_enqueue(
    *,
    incident: Incident | None,
    channel: str,
    recipient: str,
    subject: str,
    body: str,
    template: str,
    reason: str,
    idempotency_key: str,
    contact: Contact | None = None,
    context: dict | None = None,
    ack_url: str = "",
) -> Notification:
    """Write an outbox row in the CURRENT transaction (the caller's, that of the causing event)
    and deliver it after commit. Idempotent: an existing row with the same idempotency_key is
    returned unchanged (no second row in Vigil; see the module docstring for what the provider
    may see).

    ``subject`` and ``body`` are plain text: each channel escapes them for its own format
    (Slack mrkdwn, Teams cards, TwiML), so markup put in them is shown, never interpreted. The
    subject is one line (line breaks become spaces). ``ack_url`` is the recipient's one-click
    acknowledge link, shown as a button by the chat channels; it is a credential of the
    recipient and is kept out of the admin and the API.

    Rolling back the caller's transaction removes the row and cancels its delivery. If
    publishing the delivery task fails after commit (broker down, process killed), the row stays
    pending and :func:`notifications_requeue` picks it up.
    """
    recipient = message_checked(channel, recipient, idempotency_key, context)

    existing = Notification.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    try:
        # A savepoint, so losing the race for the key leaves the caller's transaction usable.
        with transaction.atomic():
            notification = Notification.objects.create(
                incident=incident,
                contact=contact,
                channel=channel,
                recipient=recipient[:255],
                subject=" ".join((subject or "").split())[:255],
                body=body or "",
                template=template[:80],
                reason=reason[:200],
                idempotency_key=idempotency_key,
                context=context or {},
                ack_url=ack_url or "",
                next_attempt_at=timezone.now(),
                urgent=bool(incident is not None and incident.severity_id <= URGENT_SEVERITY),
            )
    except IntegrityError:
        # A concurrent transaction inserted the same key and committed first.
        return Notification.objects.get(idempotency_key=idempotency_key)
    notification_id, urgent = notification.pk, notification.urgent
    transaction.on_commit(lambda: send_task_publish(notification_id, urgent=urgent))
    return notification


# Sev 1 and 2 notifications travel on the urgent queue, which a worker of its own consumes.
URGENT_SEVERITY = 2


def severity_queue(severity: int) -> str:
    """The queue of a message about an incident of ``severity``: the urgent one for Sev 1-2,
    the default one otherwise."""
    return urgent_queue() if severity <= URGENT_SEVERITY else default_queue()


@dataclass(frozen=True)
class OutboxMessage:
    """One message for :func:`notification_enqueue_many`: the arguments of
    :func:`notification_enqueue`."""

    channel: str
    recipient: str
    subject: str
    body: str
    template: str
    reason: str
    idempotency_key: str
    incident: Incident | None = None
    contact: Contact | None = None
    context: dict | None = None
    ack_url: str = ""
    # The contact by its id alone (a page names its contacts from the policy snapshot).
    contact_id: int | None = None


# Rows per INSERT, and notifications per delivery task, of a bulk enqueue.
BULK_INSERT_BATCH = 500
BULK_TASK_BATCH = 50
# Where a bulk enqueue's delivery tasks go unless the caller says (a mailing).
BULK_QUEUE = "vigil.bulk"


def notification_enqueue_many(
    messages: list[OutboxMessage], *, queue: str | None = None, new_ids: list[int] | None = None
) -> int:
    """Write many outbox rows in the CURRENT transaction and deliver them after commit: the
    pages of one incident event, or a mailing (one status update to every subscriber).
    Returns how many rows were new.

    One ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` per 500 rows (no SELECT, no
    savepoint), and after commit one broker message per 50 rows: a batch task that sends them
    one after the other, claimed and recorded in chunks (a message whose claim fails is
    skipped, one that fails is retried on its own; see ``notification_send_batch``).
    ``queue`` is where the batch tasks go: the urgent queue for the pages of a Sev 1-2
    incident (those rows are marked urgent, so their retries and re-queues stay on it), the
    default queue for other pages, ``vigil.bulk`` (the default) for mailings, so a large
    mailing never delays a page.

    Idempotent like :func:`notification_enqueue`: a key that already has a row is skipped,
    including one a concurrent transaction inserted first (neither fails nor duplicates it), so
    a second run of the same mailing writes and sends nothing; a key that appears twice in
    ``messages`` keeps its first message. A task that dies midway leaves its remaining rows
    pending; the requeue sweep re-publishes them. ``new_ids``, when given, receives the ids of
    the rows written (a page's timeline entry names them).
    """
    written = notification_enqueue_groups([(messages, queue or BULK_QUEUE)])[0]
    if new_ids is not None:
        new_ids.extend(written.values())
    return len(written)


def notification_enqueue_together(messages: list[OutboxMessage]) -> list[int]:
    """The messages of one event, each as :func:`notification_enqueue` would send it alone (on
    the urgent queue when its incident is Sev 1-2, else on the default one), but written with
    one INSERT and, after commit, sent by batch tasks instead of one task per message: a
    stakeholder update to a group, a reminder to the communications lead and the backup.
    Returns each message's row id, in order; for a key that already had a row, that row's (as
    :func:`notification_enqueue` returns the existing row)."""
    by_queue: dict[str, list[OutboxMessage]] = {}
    for message in messages:
        incident = message.incident
        queue = default_queue() if incident is None else severity_queue(incident.severity_id)
        by_queue.setdefault(queue, []).append(message)
    ids: dict[str, int] = {}
    for written in notification_enqueue_groups(
        [(grouped, queue) for queue, grouped in by_queue.items()]
    ):
        ids.update(written)
    known = [m.idempotency_key for m in messages if m.idempotency_key not in ids]
    if known:
        ids.update(
            Notification.objects.filter(idempotency_key__in=known).values_list(
                "idempotency_key", "pk"
            )
        )
    return [ids[message.idempotency_key] for message in messages]


def notification_enqueue_groups(
    groups: list[tuple[list[OutboxMessage], str]],
) -> list[dict[str, int]]:
    """:func:`notification_enqueue_many` for several groups of messages at once, each with the
    queue its batch tasks go to: the pages of one escalation sweep batch, many incidents' steps.
    All rows are written with one INSERT per 500 (and their contacts checked with one query);
    after commit each group is published as batch tasks of its own, so the pages of different
    incidents are sent by different tasks, in parallel, not one after the other (groups next to
    each other that page one incident on one queue, such as its acknowledgement timeout and the
    step a sweep fires with it, share their tasks); then every published row is stamped with one
    UPDATE. A key that appears twice keeps its first message.
    Returns the rows written now, group by group: their ids by idempotency key, in message
    order (a key that already had a row is not there)."""
    wanted: dict[str, tuple[int, OutboxMessage]] = {}
    for index, (messages, _queue) in enumerate(groups):
        for message in messages:
            message_checked(
                message.channel, message.recipient, message.idempotency_key, message.context
            )
            wanted.setdefault(message.idempotency_key, (index, message))
    written: list[dict[str, int]] = [{} for _ in groups]
    if not wanted:
        return written
    now = timezone.now()
    urgent = urgent_queue()
    rows = [
        Notification(
            incident=m.incident,
            contact_id=m.contact.pk if m.contact is not None else m.contact_id,
            channel=m.channel,
            recipient=m.recipient.strip()[:255],
            subject=" ".join((m.subject or "").split())[:255],
            body=m.body or "",
            template=m.template[:80],
            reason=m.reason[:200],
            idempotency_key=key,
            context=m.context or {},
            ack_url=m.ack_url or "",
            next_attempt_at=now,
            urgent=groups[index][1] == urgent,
            bulk=groups[index][1] == BULK_QUEUE,
        )
        for key, (index, m) in wanted.items()
    ]
    new: dict[str, int] = {}
    for start in range(0, len(rows), BULK_INSERT_BATCH):
        new.update(_insert_new(rows[start : start + BULK_INSERT_BATCH]))
    for key, (index, _message) in wanted.items():
        if key in new:
            written[index][key] = new[key]
    batches: list[tuple[list[int], str]] = []
    shared: int | None = None
    for index, ids in enumerate(written):
        if not ids:
            continue
        messages, queue = groups[index]
        incident = _one_incident(messages)
        if batches and incident is not None and incident == shared and batches[-1][1] == queue:
            batches[-1][0].extend(ids.values())
        else:
            batches.append((list(ids.values()), queue))
        shared = incident
    if batches:
        transaction.on_commit(lambda: batch_tasks_publish(batches))
    return written


def _one_incident(messages: list[OutboxMessage]) -> int | None:
    """The id of the incident every one of ``messages`` is about, if they share one."""
    ids = {m.incident.pk if m.incident is not None else None for m in messages}
    return ids.pop() if len(ids) == 1 else None


def _insert_new(rows: list[Notification]) -> dict[str, int]:
    """Insert ``rows`` in one statement, skipping those whose idempotency key already has a
    row; returns the id of each row inserted by its key. ``bulk_create(ignore_conflicts=True)``
    writes the same statement but does not return the ids; ``rows_insert`` does
    (PostgreSQL and SQLite 3.35+ return the inserted rows only)."""
    # A contact deleted since the policy snapshot was taken would fail the whole INSERT on its
    # foreign key: such a row is written without its contact.
    contact_ids = {row.contact_id for row in rows if row.contact_id}
    if contact_ids:
        alive = contact_ids_known()
        for row in rows:
            if row.contact_id and row.contact_id not in alive:
                row.contact_id = None
    if not connection.features.can_return_rows_from_bulk_insert:
        # An old SQLite: skip the known keys, insert the rest, read their ids back.
        keys = [row.idempotency_key for row in rows]
        existing = set(
            Notification.objects.filter(idempotency_key__in=keys).values_list(
                "idempotency_key", flat=True
            )
        )
        new = [row for row in rows if row.idempotency_key not in existing]
        Notification.objects.bulk_create(new, ignore_conflicts=True)
        return dict(
            Notification.objects.filter(
                idempotency_key__in=[row.idempotency_key for row in new],
                status=NotificationStatus.PENDING,
            ).values_list("idempotency_key", "pk")
        )
    inserted = rows_insert(rows, ignore_conflicts=True, key="idempotency_key")
    return {row.idempotency_key: row.pk for row in inserted}


def batch_tasks_publish(
    groups: list[tuple[list[int], str]], *, countdown: float | None = None
) -> None:
    """Publish the batch tasks of each group on its queue (due in ``countdown`` seconds: the
    retries of a batch), then stamp every row whose message is with the broker in one
    statement; a batch whose publish fails stays unmarked for the sweep."""
    from ..tasks import notification_send_batch_task

    options: dict[str, Any] = {"countdown": countdown} if countdown else {}
    published: list[int] = []
    for ids, queue in groups:
        for start in range(0, len(ids), BULK_TASK_BATCH):
            batch = ids[start : start + BULK_TASK_BATCH]
            try:
                notification_send_batch_task.apply_async(args=[batch], queue=queue, **options)
            except Exception:
                logger.exception("Could not queue %s notification(s); the sweep will", len(batch))
                continue
            published.extend(batch)
            if len(published) >= BULK_INSERT_BATCH:
                # A mailing's rows are stamped as they go, not only after its last publish.
                _mark_published(published)
                published = []
    if published:
        _mark_published(published)


def row_queue(*, urgent: bool, bulk: bool) -> str:
    """A row's queue by its flags: a page of a Sev 1-2 incident on the urgent one, a mailing's
    message on the bulk one (a mailing never lands in front of pages), the rest on the default
    one."""
    return urgent_queue() if urgent else BULK_QUEUE if bulk else default_queue()


def send_task_publish(
    notification_id: int, *, urgent: bool, bulk: bool = False, countdown: float | None = None
) -> None:
    """Publish the send task of one row (after commit) and mark the row published. A broker
    failure is logged, not raised: the row stays pending and unmarked, and the requeue sweep
    publishes it again after ``VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS``."""
    from ..tasks import notification_send_task

    options: dict[str, Any] = {"queue": row_queue(urgent=urgent, bulk=bulk)}
    if countdown:
        options["countdown"] = countdown
    try:
        notification_send_task.apply_async(args=[notification_id], **options)
    except Exception:
        logger.exception("Could not queue notification %s; the sweep will", notification_id)
        return
    _mark_published([notification_id])


def _mark_published(ids: list[int]) -> None:
    try:
        OUTBOX.mark_published(ids)
    except Exception:
        # The task is queued; an unmarked row only risks one duplicate task from the sweep.
        logger.exception("Could not mark notification(s) %s published", ids)
