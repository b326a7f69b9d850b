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

import base64
import binascii
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from incidents.events import default_queue, urgent_queue
from incidents.models import Contact, Incident, Kind, MessageChannel, Source
from incidents.queue import WorkQueue
from incidents.services.common import timeline_record

from ..models import Notification, NotificationStatus

logger = logging.getLogger(__name__)

__all__ = [
    "EMAIL_HEADERS",
    "OutboxMessage",
    "SendOutcome",
    "notification_enqueue",
    "notification_enqueue_many",
    "notification_retry",
    "notification_send",
    "notifications_requeue",
    "outbox_settings",
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
    recipient = _checked(channel, recipient, idempotency_key, context)

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
    transaction.on_commit(lambda: _publish(notification_id, urgent=urgent))
    return notification


# Sev 1 and 2 notifications travel on the urgent queue, which a worker of its own consumes.
URGENT_SEVERITY = 2

# Headers an email notification may carry besides those the channel sets (From, To, Subject,
# Message-ID, the idempotency key): list and threading headers for customer-facing mail.
EMAIL_HEADERS = frozenset(
    {
        "Auto-Submitted",
        "In-Reply-To",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Precedence",
        "References",
        "Reply-To",
        "X-Auto-Response-Suppress",
    }
)


def _checked(channel: str, recipient: str, key: str, context: dict | None) -> str:
    if channel not in MessageChannel.values:
        raise ValueError(
            f"Unknown notification channel {channel!r}; known: {MessageChannel.values}."
        )
    recipient = (recipient or "").strip()
    if not recipient:
        raise ValueError("A notification needs a recipient.")
    if not key or len(key) > 200:
        raise ValueError("An idempotency key of 1 to 200 characters is required.")
    _check_calendar(channel, context)
    _check_attachments(channel, context)
    headers = (context or {}).get("headers") or {}
    if headers:
        if channel != MessageChannel.EMAIL:
            raise ValueError("Only email notifications carry headers.")
        unknown = sorted(set(headers) - EMAIL_HEADERS)
        if unknown:
            allowed = ", ".join(sorted(EMAIL_HEADERS))
            raise ValueError(f"Headers {unknown} are not allowed; allowed: {allowed}.")
        for name, value in headers.items():
            if not isinstance(value, str) or "\r" in value or "\n" in value or len(value) > 2000:
                raise ValueError(f"Header {name} must be one line of at most 2000 characters.")
    return recipient


# A calendar invitation an email may carry (``context["ics"]``, the iCalendar text, with
# ``context["ics_method"]``): sent as a text/calendar alternative and an invite.ics attachment.
CALENDAR_METHODS = frozenset({"REQUEST", "CANCEL"})
CALENDAR_MAX_LENGTH = 200_000


def _check_calendar(channel: str, context: dict | None) -> None:
    ics = (context or {}).get("ics")
    method = (context or {}).get("ics_method")
    if ics is None and method is None:
        return
    if channel != MessageChannel.EMAIL:
        raise ValueError("Only email notifications carry a calendar invitation.")
    if method not in CALENDAR_METHODS:
        raise ValueError(f"ics_method must be one of {sorted(CALENDAR_METHODS)}.")
    if not isinstance(ics, str) or not ics.startswith("BEGIN:VCALENDAR"):
        raise ValueError("ics must be the text of an iCalendar object (BEGIN:VCALENDAR...).")
    if len(ics) > CALENDAR_MAX_LENGTH:
        raise ValueError(f"ics is limited to {CALENDAR_MAX_LENGTH} characters.")
    if f"\r\nMETHOD:{method}\r\n" not in ics:
        raise ValueError(f"ics must declare METHOD:{method}, as ics_method says.")


# Files an email may carry (``context["attachments"]``): a list of {"filename", "content_type",
# "content_base64"}, attached decoded. The whole file travels in the row's context, so their
# number and size are bounded here, where a sender learns of it, not at the provider.
ATTACHMENTS_MAX = 5
ATTACHMENTS_MAX_BYTES = 10 * 1024 * 1024
ATTACHMENT_FILENAME_MAX = 120
ATTACHMENT_FIELDS = frozenset({"filename", "content_type", "content_base64"})
# type/subtype as RFC 6838 names them; no parameters (the channel adds none).
_CONTENT_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)


def _check_attachments(channel: str, context: dict | None) -> None:
    attachments = (context or {}).get("attachments")
    if attachments is None:
        return
    if channel != MessageChannel.EMAIL:
        raise ValueError("Only email notifications carry attachments.")
    if not isinstance(attachments, list):
        raise ValueError("attachments must be a list of {filename, content_type, content_base64}.")
    if len(attachments) > ATTACHMENTS_MAX:
        raise ValueError(f"At most {ATTACHMENTS_MAX} attachments (got {len(attachments)}).")
    total = 0
    for index, attachment in enumerate(attachments, start=1):
        total += _check_attachment(index, attachment)
        if total > ATTACHMENTS_MAX_BYTES:
            raise ValueError(
                f"Attachments are limited to {ATTACHMENTS_MAX_BYTES // (1024 * 1024)} MB in "
                "total (decoded)."
            )


def _check_attachment(index: int, attachment: object) -> int:
    """The decoded size of one valid attachment; ValueError naming what is wrong."""
    where = f"Attachment {index}"
    if not isinstance(attachment, dict) or set(attachment) != ATTACHMENT_FIELDS:
        raise ValueError(f"{where} must have exactly: {', '.join(sorted(ATTACHMENT_FIELDS))}.")
    filename = attachment["filename"]
    if not isinstance(filename, str) or not filename.strip() or filename.strip(".") == "":
        raise ValueError(f"{where}: filename must be a non-empty name.")
    if len(filename) > ATTACHMENT_FILENAME_MAX:
        raise ValueError(f"{where}: filename is limited to {ATTACHMENT_FILENAME_MAX} characters.")
    if "/" in filename or "\\" in filename:
        raise ValueError(f"{where}: filename must not contain a path separator.")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in filename):
        raise ValueError(
            f"{where}: filename must not contain control or invisible formatting characters."
        )
    content_type = attachment["content_type"]
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"{where}: content_type must be type/subtype, e.g. application/pdf.")
    content = attachment["content_base64"]
    if not isinstance(content, str):
        raise ValueError(f"{where}: content_base64 must be base64 text.")
    # Refuse an oversized file before decoding it.
    if len(content) > (ATTACHMENTS_MAX_BYTES + 2) // 3 * 4:
        raise ValueError(
            f"Attachments are limited to {ATTACHMENTS_MAX_BYTES // (1024 * 1024)} MB in "
            "total (decoded)."
        )
    try:
        return len(base64.b64decode(content, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: content_base64 is not valid base64.") from None


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
    one after the other, each under its own claim (a message whose claim fails is skipped, one
    that fails is retried on its own). ``queue`` is where the batch tasks go: the urgent queue
    for the pages of a Sev 1-2 incident (those rows are marked urgent, so their retries and
    re-queues stay on it), the default queue for other pages, ``vigil.bulk`` (the default) for
    mailings, so a large mailing never delays a page.

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


def notification_enqueue_groups(
    groups: list[tuple[list[OutboxMessage], str]],
) -> list[dict[str, int]]:
    """:func:`notification_enqueue_many` for several groups of messages at once, each with the
    queue its batch tasks go to: the pages of one escalation sweep batch, many incidents' steps.
    All rows are written with one INSERT per 500 (and their contacts checked with one query);
    after commit each group is published as batch tasks of its own, so the pages of different
    incidents are sent by different tasks, in parallel, not one after the other; then every
    published row is stamped with one UPDATE. A key that appears twice keeps its first message.
    Returns the rows written now, group by group: their ids by idempotency key, in message
    order (a key that already had a row is not there)."""
    wanted: dict[str, tuple[int, OutboxMessage]] = {}
    for index, (messages, _queue) in enumerate(groups):
        for message in messages:
            _checked(message.channel, message.recipient, message.idempotency_key, message.context)
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
    batches = [(list(ids.values()), groups[index][1]) for index, ids in enumerate(written) if ids]
    if batches:
        transaction.on_commit(lambda: _publish_groups(batches))
    return written


def _insert_new(rows: list[Notification]) -> dict[str, int]:
    """Insert ``rows`` in one statement, skipping those whose idempotency key already has a
    row; returns the id of each row inserted by its key. ``bulk_create(ignore_conflicts=True)``
    writes the same statement but does not return the ids, so this asks the ORM's insert query
    for them (PostgreSQL and SQLite 3.35+ return the inserted rows only)."""
    meta = Notification._meta
    key_field = meta.get_field("idempotency_key")
    # A contact deleted since the policy snapshot was taken would fail the whole INSERT on its
    # foreign key: such a row is written without its contact.
    contact_ids = {row.contact_id for row in rows if row.contact_id}
    if contact_ids:
        alive = set(Contact.objects.filter(pk__in=contact_ids).values_list("pk", flat=True))
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
    for row in rows:
        row._prepare_related_fields_for_save(operation_name="bulk_create")
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    returned = Notification.objects._insert(
        rows, fields=fields, returning_fields=[meta.pk, key_field], on_conflict=OnConflict.IGNORE
    )
    # A single row that was skipped comes back as [None].
    return {values[1]: values[0] for values in returned if values and values[0] is not None}


def _publish_groups(groups: list[tuple[list[int], str]]) -> None:
    """Publish the batch tasks of each group on its queue, then stamp every row whose message
    is with the broker in one statement; a batch whose publish fails stays unmarked for the
    sweep."""
    from ..tasks import notification_send_batch_task

    published: list[int] = []
    for ids, queue in groups:
        for start in range(0, len(ids), BULK_TASK_BATCH):
            batch = ids[start : start + BULK_TASK_BATCH]
            try:
                notification_send_batch_task.apply_async(args=[batch], queue=queue)
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


def _publish(
    notification_id: int, *, urgent: bool, bulk: bool = False, countdown: float | None = None
) -> None:
    """Publish the send task of one row (after commit) and mark the row published. A broker
    failure is logged, not raised: the row stays pending and unmarked, and the requeue sweep
    publishes it again after ``VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS``."""
    from ..tasks import notification_send_task

    queue = urgent_queue() if urgent else BULK_QUEUE if bulk else default_queue()
    options: dict[str, Any] = {"queue": queue}
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
    """Send the rows of one batch task one after the other; returns how many were sent.

    First their publish stamp is cleared (and their next attempt set to now): if this worker
    dies midway, the rows it did not reach look like rows whose publish was lost and the
    requeue sweep publishes them again after ``VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS``, instead
    of after the publish lease. A batch still working after that long may see some of its
    rows published again; each row's claim keeps it to one delivery."""
    OUTBOX.mark_taken(notification_ids)
    # The pages of one batch are mostly one incident's: read it once, not once per row.
    incidents: dict[int, Incident] = {}
    return sum(
        notification_send(notification_id=pk, incidents=incidents).result == "sent"
        for pk in notification_ids
    )


def notification_send(
    *, notification_id: int, incidents: dict[int, Incident] | None = None
) -> SendOutcome:
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
    from ..channels import PermanentDeliveryError, TransientDeliveryError, backend_for

    # One UPDATE … RETURNING claims the row; on PostgreSQL the incident a channel shows comes
    # with it, in the same round trip. Elsewhere a batch (``incidents``) reads each incident once.
    row = OUTBOX.claim(notification_id, related="incident")
    if row is None:
        return SendOutcome("skipped", notification_id)
    claim = row.claimed_at
    if incidents is not None and row.incident_id is not None:
        if row.incident_id in incidents:
            row.incident = incidents[row.incident_id]
        else:
            incidents[row.incident_id] = row.incident

    try:
        backend = backend_for(row.channel)
        provider_id = backend.send(row)
    except PermanentDeliveryError as exc:
        return _record_failure(row, claim=claim, error=str(exc) or repr(exc), permanent=True)
    except TransientDeliveryError as exc:
        return _record_failure(
            row, claim=claim, error=str(exc) or repr(exc), retry_after=exc.retry_after
        )
    except Exception as exc:
        # An unexpected error (a bug, a library surprise, the soft time limit) is retried:
        # giving up on a page after one odd exception is worse than trying again.
        logger.exception("Notification %s: unexpected delivery error", notification_id)
        return _record_failure(row, claim=claim, error=f"{type(exc).__name__}: {exc}")
    return _record_sent(row, provider_id=provider_id or "")


# Pauses between the tries of the write that records a send. The message is already with the
# provider: giving up on this write means sending it again after the lease, so a database that
# is away for a moment (a failover, a dropped connection) is waited for, briefly.
RECORD_RETRY_DELAYS = (0.5, 1.0, 2.0)


def _record_sent(row: Notification, *, provider_id: str) -> SendOutcome:
    sent_at = timezone.now()
    for pause in (*RECORD_RETRY_DELAYS, None):
        try:
            OUTBOX.complete(row, provider_message_id=provider_id[:255], sent_at=sent_at)
            break
        except (OperationalError, InterfaceError):
            if pause is None:
                logger.error(
                    "Notification %s was accepted by the provider but could not be recorded; "
                    "it will be sent again, with the same idempotency key, after the lease",
                    row.pk,
                )
                raise
            logger.warning("Notification %s: recording the send failed; trying again", row.pk)
            time.sleep(pause)
            if not connection.in_atomic_block:
                # A broken connection is replaced on the next query.
                connection.close_if_unusable_or_obsolete()
    return SendOutcome("sent", row.pk, attempts=row.attempts, detail=provider_id)


def _record_failure(
    row: Notification,
    *,
    claim: datetime,
    error: str,
    permanent: bool = False,
    retry_after: float | None = None,
) -> SendOutcome:
    conf = outbox_settings()
    error = error[:2000]
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
            transaction.on_commit(
                lambda: _publish(row.pk, urgent=urgent, bulk=bulk, countdown=delay)
            )
    return SendOutcome("retry", row.pk, attempts=locked.attempts, detail=error, retry_in=delay)


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
    claim in :func:`notification_send` makes any duplicate task harmless."""
    conf = outbox_settings()
    with transaction.atomic():
        due = OUTBOX.requeue(now=now, batch=conf.requeue_batch)
        # Each back on its own queue: a page of a Sev 1-2 incident on the urgent one, a
        # mailing's message on the bulk one (a lost mailing never lands in front of pages).
        kinds = {
            pk: (urgent, bulk)
            for pk, urgent, bulk in Notification.objects.filter(pk__in=due).values_list(
                "pk", "urgent", "bulk"
            )
        }
        for pk in due:
            urgent, bulk = kinds.get(pk, (False, False))
            transaction.on_commit(
                lambda pk=pk, urgent=urgent, bulk=bulk: _publish(pk, urgent=urgent, bulk=bulk)
            )
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
        transaction.on_commit(lambda: _publish(pk, urgent=urgent, bulk=bulk))
    return True
