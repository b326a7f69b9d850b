"""Fan-out: each published status update, and each notified step of a maintenance window, sent
to everyone who should get it — once each.

* **In the publishing transaction** :func:`fanout_for_status_update` /
  :func:`fanout_for_maintenance` write a :class:`Fanout` row (one per update, one per
  maintenance step: unique) and publish :func:`fanout_run`'s task after commit. Rolling the
  publication back removes the row; nothing is sent.
* **After commit** :func:`fanout_run` claims the row (``SKIP LOCKED``, a lease renewed by each
  batch) and writes, 500 recipients at a time and one transaction per batch, the
  :class:`Message` rows (``bulk_create``) and the outbox rows
  (``escalation.outbox.notification_enqueue_many``) that deliver them.
* **Who** (``fanout_recipients``): active email subscribers to every component or to one the
  incident touched (the components of its published updates up to this one and of its
  services; for maintenance, the window's components, and only subscribers who want maintenance
  notices); active webhook subscribers likewise (the ``subscriber`` channel, a Statuspage-shaped
  JSON document); and for a customer-facing incident whose severity is in the policy's
  ``customer_email_severities``, the contacts (not opted out) of the customers using the
  incident's services or the updated components' services. Suppressed addresses are left out,
  and an address on several lists gets one message: its subscriber message first, else its
  customer-contact message.
* **Once each**: a message's idempotency key is derived from the publication and the lower-cased
  address, so a rerun (a retry, a worker killed midway, the sweep) writes only what is missing;
  the outbox delivers each key once (at least once towards the mail server, always with the
  same Message-ID).
* **Bad data never stops it**: a recipient whose message cannot be built (an invalid address,
  a link that cannot be made) is skipped and logged; the others get theirs.
* :func:`fanouts_sweep` (beat) re-publishes fan-outs whose task was lost or whose worker died
  (past the lease), retries failed runs with backoff, and :func:`messages_reconcile` (in
  ``message_reconcile``) marks messages ``sent``/``failed`` as their outbox rows are, for the
  admin's delivery counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from escalation.outbox import OutboxMessage, email_message_id, notification_enqueue_many
from incidents.models import MessageChannel

from ..models import (
    CustomerContact,
    Fanout,
    FanoutState,
    Maintenance,
    Message,
    MessageKind,
    StatusUpdate,
    Subscriber,
)
from .fanout_recipients import Recipient, fanout_recipients, message_key
from .links import link_token
from .mailing import (
    MAINTENANCE_STEPS,
    Mailing,
    email_headers,
    mailing_for_maintenance,
    mailing_for_update,
    page_info,
)

logger = logging.getLogger(__name__)

__all__ = [
    "FanoutResult",
    "fanout_for_maintenance",
    "fanout_for_status_update",
    "fanout_run",
    "fanouts_sweep",
]

MAX_ATTEMPTS = 5
# A fan-out published in a transaction is run by its own task; the sweep waits this long
# before it publishes one that was never claimed (a task lost between commit and broker).
FIRST_RUN_GRACE = timedelta(seconds=60)


def _batch_size() -> int:
    return max(1, int(getattr(settings, "VIGIL_FANOUT_BATCH", 500)))


def _lease() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "VIGIL_FANOUT_LEASE_SECONDS", 120)))


# --- creation, in the publishing transaction ----------------------------------------------------


def fanout_for_status_update(*, status_update: StatusUpdate) -> Fanout:
    """Write the fan-out of a just-published status update in the CURRENT transaction (the
    publication's) and run it after commit. Idempotent: one fan-out per update."""
    fanout, created = Fanout.objects.get_or_create(
        status_update=status_update,
        defaults={
            "kind": MessageKind.STATUS_UPDATE,
            "next_attempt_at": timezone.now() + FIRST_RUN_GRACE,
        },
    )
    if created:
        _publish_on_commit(fanout.pk)
    return fanout


def fanout_for_maintenance(*, maintenance: Maintenance, step: str) -> Fanout | None:
    """Write the fan-out of one step of a maintenance window (scheduled, in progress,
    completed, cancelled; other steps notify nobody) in the CURRENT transaction and run it
    after commit. Idempotent: one fan-out per window and step."""
    if step not in MAINTENANCE_STEPS:
        return None
    fanout, created = Fanout.objects.get_or_create(
        maintenance=maintenance,
        step=str(step),
        defaults={
            "kind": MessageKind.MAINTENANCE,
            "next_attempt_at": timezone.now() + FIRST_RUN_GRACE,
        },
    )
    if created:
        _publish_on_commit(fanout.pk)
    return fanout


def _publish_on_commit(fanout_id: int) -> None:
    transaction.on_commit(lambda: _publish(fanout_id), robust=True)


def _publish(fanout_id: int) -> None:
    from ..tasks import fanout_run_task

    fanout_run_task.delay(fanout_id)


# --- running it ---------------------------------------------------------------------------------


def _valid_email(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


@dataclass(frozen=True)
class FanoutResult:
    """What one run did: ``done``, ``skipped`` (nothing to claim), ``superseded`` (another
    run took over), ``retry`` or ``failed``; how many messages it wrote and skipped."""

    result: str
    fanout_id: int
    written: int = 0
    skipped: int = 0
    detail: str = ""


class _Superseded(Exception):
    pass


def _claim(fanout_id: int, now: datetime) -> Fanout | None:
    with transaction.atomic():
        row = (
            Fanout.objects.select_for_update(skip_locked=True)
            .filter(pk=fanout_id, state__in=[FanoutState.PENDING, FanoutState.RUNNING])
            .first()
        )
        if row is None:
            return None
        if (
            row.state == FanoutState.RUNNING
            and row.claimed_at is not None
            and row.claimed_at > now - _lease()
        ):
            return None  # another run holds it
        row.state = FanoutState.RUNNING
        row.claimed_at = now
        row.attempts += 1
        row.next_attempt_at = now + _lease()
        row.save(update_fields=["state", "claimed_at", "attempts", "next_attempt_at"])
        return row


def fanout_run(*, fanout_id: int) -> FanoutResult:
    """Expand a fan-out into its messages (see the module docstring). Safe to call any number
    of times, concurrently too: one run holds the claim, each batch checks it still does, and
    keys make anything already written a no-op."""
    row = _claim(fanout_id, timezone.now())
    if row is None:
        return FanoutResult("skipped", fanout_id)
    claim = row.claimed_at
    fanout = Fanout.objects.select_related("status_update__incident", "maintenance").get(
        pk=fanout_id
    )
    written = skipped = 0
    try:
        page = page_info()
        if fanout.status_update_id:
            mailing = mailing_for_update(fanout.status_update, page=page)
        else:
            mailing = mailing_for_maintenance(fanout.maintenance, step=fanout.step, page=page)
        recipients = fanout_recipients(fanout)
        links = _Links()
        size = _batch_size()
        for start in range(0, len(recipients), size):
            claim, new, bad = _write_batch(
                fanout, mailing, recipients[start : start + size], claim=claim, links=links
            )
            written += new
            skipped += bad
    except _Superseded:
        return FanoutResult("superseded", fanout_id, written, skipped)
    except Exception as exc:
        logger.exception("Fan-out %s failed", fanout_id)
        return _record_failure(fanout_id, claim=claim, error=f"{type(exc).__name__}: {exc}")
    with transaction.atomic():
        locked = Fanout.objects.select_for_update().get(pk=fanout_id)
        if locked.claimed_at != claim:
            return FanoutResult("superseded", fanout_id, written, skipped)
        locked.state = FanoutState.DONE
        locked.finished_at = timezone.now()
        locked.next_attempt_at = None
        locked.last_error = (
            f"{skipped} recipient(s) skipped: their message could not be built." if skipped else ""
        )
        locked.save(update_fields=["state", "finished_at", "next_attempt_at", "last_error"])
    logger.info("Fan-out %s done: %s message(s) written, %s skipped", fanout_id, written, skipped)
    return FanoutResult("done", fanout_id, written, skipped)


def _record_failure(fanout_id: int, *, claim: datetime | None, error: str) -> FanoutResult:
    with transaction.atomic():
        locked = Fanout.objects.select_for_update().get(pk=fanout_id)
        if locked.claimed_at != claim:
            return FanoutResult("superseded", fanout_id, detail=error)
        locked.last_error = error[:2000]
        if locked.attempts >= MAX_ATTEMPTS:
            locked.state = FanoutState.FAILED
            locked.finished_at = timezone.now()
            locked.next_attempt_at = None
            result = "failed"
        else:
            locked.state = FanoutState.PENDING
            locked.next_attempt_at = timezone.now() + timedelta(
                seconds=min(1800, 30 * 2**locked.attempts)
            )
            result = "retry"
        locked.save(update_fields=["state", "finished_at", "next_attempt_at", "last_error"])
    return FanoutResult(result, fanout_id, detail=error)


def _previous_messages(fanout: Fanout, addresses: list[str]) -> dict[str, str]:
    """The Message-ID of the last message each address got in the same thread (the same
    incident, or the same maintenance window) before this publication."""
    rows = Message.objects.filter(recipient__in=addresses, channel=MessageChannel.EMAIL).exclude(
        fanout=fanout
    )
    if fanout.status_update_id:
        rows = rows.filter(incident_id=fanout.status_update.incident_id)
    else:
        rows = rows.filter(maintenance_id=fanout.maintenance_id)
    return dict(rows.order_by("created_at", "pk").values_list("recipient", "message_id"))


class _Links:
    """Each recipient's manage and unsubscribe (or opt-out) links: the URLs of
    ``communications.services.links`` (the same signed tokens), with each route reversed once
    per run instead of twice per recipient."""

    PLACEHOLDER = "vigil-token-placeholder"

    def __init__(self) -> None:
        base = settings.VIGIL_BASE_URL.rstrip("/")
        self.prefix = {
            action: base + reverse(f"status:subscription-{action}", args=[self.PLACEHOLDER])
            for action in ("manage", "unsubscribe", "contact-optout")
        }

    def url(self, row: Subscriber | CustomerContact, action: str) -> str:
        return self.prefix[action].replace(self.PLACEHOLDER, link_token(row, action))

    def of(self, recipient: Recipient) -> tuple[str, str]:
        """(manage, unsubscribe) links of one recipient."""
        if recipient.contact is not None:
            optout = self.url(recipient.contact, "contact-optout")
            return optout, optout
        subscriber = recipient.subscriber
        return self.url(subscriber, "manage"), self.url(subscriber, "unsubscribe")


def _build(
    fanout: Fanout,
    mailing: Mailing,
    recipient: Recipient,
    *,
    links: _Links,
    key: str,
    previous: str,
) -> tuple[Message, OutboxMessage]:
    manage, unsubscribe = links.of(recipient)
    if recipient.channel == MessageChannel.EMAIL:
        if not _valid_email(recipient.address):
            raise ValueError(f"{recipient.address!r} is not an email address")
        text, html = mailing.email_for(recipient.audience, manage=manage, unsubscribe=unsubscribe)
        outbox = OutboxMessage(
            channel=MessageChannel.EMAIL,
            recipient=recipient.address,
            subject=mailing.subject,
            body=text,
            template=mailing.template,
            reason=mailing.reason,
            idempotency_key=key,
            context={
                "html": html,
                "headers": email_headers(mailing, unsubscribe=unsubscribe, previous=previous),
            },
        )
        message_id = email_message_id(key)
    else:
        outbox = OutboxMessage(
            channel=MessageChannel.SUBSCRIBER,
            recipient=recipient.address,
            subject=mailing.subject,
            body=mailing.webhook_for(unsubscribe=unsubscribe),
            template=mailing.template.replace("_email", "_webhook"),
            reason=mailing.reason,
            idempotency_key=key,
        )
        message_id = ""
    update = fanout.status_update
    message = Message(
        fanout=fanout,
        kind=fanout.kind,
        audience=recipient.audience,
        incident_id=update.incident_id if update is not None else None,
        status_update=update,
        maintenance_id=fanout.maintenance_id,
        subscriber=recipient.subscriber,
        contact=recipient.contact,
        channel=recipient.channel,
        recipient=recipient.address[:500],
        idempotency_key=key,
        message_id=message_id,
    )
    return message, outbox


def _write_batch(
    fanout: Fanout, mailing: Mailing, batch: list[Recipient], *, claim: datetime, links: _Links
) -> tuple[datetime, int, int]:
    """Write one batch's messages in one transaction, if this run still holds the claim.
    Returns the renewed claim, how many messages were new and how many were skipped."""
    keys = {recipient.address: message_key(fanout, recipient.address) for recipient in batch}
    with transaction.atomic():
        locked = Fanout.objects.select_for_update().get(pk=fanout.pk)
        if locked.claimed_at != claim:
            raise _Superseded
        existing = set(
            Message.objects.filter(idempotency_key__in=list(keys.values())).values_list(
                "idempotency_key", flat=True
            )
        )
        todo = [r for r in batch if keys[r.address] not in existing]
        previous = _previous_messages(
            fanout, [r.address for r in todo if r.channel == MessageChannel.EMAIL]
        )
        messages, outbox, skipped = [], [], 0
        for recipient in todo:
            try:
                message, out = _build(
                    fanout,
                    mailing,
                    recipient,
                    links=links,
                    key=keys[recipient.address],
                    previous=previous.get(recipient.address, ""),
                )
            except Exception:
                # One recipient's bad data (an invalid address, a link that cannot be made)
                # costs that recipient their message, never the others theirs.
                logger.exception("Fan-out %s: no message to %s", fanout.pk, recipient.address[:100])
                skipped += 1
                continue
            messages.append(message)
            outbox.append(out)
        Message.objects.bulk_create(messages, batch_size=500, ignore_conflicts=True)
        notification_enqueue_many(outbox)
        now = timezone.now()
        locked.claimed_at = now
        locked.next_attempt_at = now + _lease()
        locked.recipients += len(messages)
        locked.save(update_fields=["claimed_at", "next_attempt_at", "recipients"])
    return now, len(messages), skipped


# --- recovery -------------------------------------------------------------------------------------


def fanouts_sweep(*, now: datetime | None = None, limit: int = 100) -> int:
    """Re-publish the fan-outs that are due: pending ones whose task was lost or whose retry
    is due, running ones whose worker stopped renewing the lease. Returns how many. Safe to
    run twice at once: the claim in :func:`fanout_run` lets one run hold each fan-out."""
    now = now or timezone.now()
    due = list(
        Fanout.objects.filter(
            state__in=[FanoutState.PENDING, FanoutState.RUNNING], next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in due:
        _publish(pk)
    return len(due)
