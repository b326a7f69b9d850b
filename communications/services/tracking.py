"""Delivery tracking of customer-facing email: what the email provider reports about each
:class:`Message`, through django-anymail's normalized ``tracking`` signal (the webhook is
mounted by ``communications.tracking_urls``, which has already checked its signature).

* **Which message**: the ``vigil_idempotency_key`` anymail metadata the email channel sends with
  every message (returned by the ESPs in their events); else the provider's message id (kept on
  the message once it is marked sent) or our own Message-ID. An event without metadata that
  arrives before the message is marked sent is recorded without a message.
* **Once**: each event is recorded as a :class:`MessageEvent` under the ESP's event id (or, when
  the ESP gives none, an id derived from the event's content); a redelivered webhook finds it
  and changes nothing.
* **State**: the message's delivery state moves forward only (a late ``deferred`` or ``sent``
  never undoes ``delivered``; a bounce after delivery is recorded: some arrive late).
* **Suppression**: a hard bounce (``bounced``), a ``rejected`` message and a spam complaint add
  the address to the suppression list; ``unsubscribed`` (the provider's own unsubscribe) adds it
  too, and unsubscribes the subscriber or opts the customer contact out.

Events about mail that is not a customer message (paging, stakeholder mail) are recorded
without a message and change nothing else: suppression is for customer-facing mail only.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from incidents.services.common import audited_save

from ..models import (
    CustomerContact,
    DeliveryState,
    Message,
    MessageEvent,
    Subscriber,
    SubscriberState,
    Suppression,
    SuppressionReason,
)

logger = logging.getLogger(__name__)

__all__ = ["tracking_event_record", "tracking_receive"]

D = DeliveryState
# anymail's event types and the delivery state each gives a message (None: recorded only).
STATES: dict[str, str | None] = {
    "queued": D.SENT,
    "sent": D.SENT,
    "deferred": D.DEFERRED,
    "delivered": D.DELIVERED,
    "opened": D.DELIVERED,
    "clicked": D.DELIVERED,
    "autoresponded": D.DELIVERED,
    "bounced": D.BOUNCED,
    "rejected": D.REJECTED,
    "failed": D.FAILED,
    "complained": D.COMPLAINED,
    "unsubscribed": D.UNSUBSCRIBED,
}
# How far along each state is; a message only moves to a state further along.
RANK = {
    D.QUEUED: 0,
    D.SENT: 1,
    D.DEFERRED: 2,
    D.FAILED: 3,
    D.DELIVERED: 4,
    D.REJECTED: 5,
    D.BOUNCED: 5,
    D.COMPLAINED: 6,
    D.UNSUBSCRIBED: 6,
}
SUPPRESS = {
    "bounced": SuppressionReason.HARD_BOUNCE,
    "rejected": SuppressionReason.HARD_BOUNCE,
    "complained": SuppressionReason.COMPLAINT,
    "unsubscribed": SuppressionReason.UNSUBSCRIBED,
}


def tracking_receive(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """anymail's ``tracking`` signal receiver."""
    tracking_event_record(event=event, esp_name=esp_name)


def _text(value: Any, limit: int) -> str:
    return ("" if value is None else str(value))[:limit]


def _event_id(event: Any, esp_name: str) -> str:
    given = _text(getattr(event, "event_id", None), 200)
    if given:
        return given
    stamp = getattr(event, "timestamp", None)
    material = "\n".join(
        [
            esp_name,
            _text(getattr(event, "event_type", ""), 40),
            _text(getattr(event, "message_id", ""), 255),
            _text(getattr(event, "recipient", ""), 254).lower(),
            stamp.isoformat() if stamp else "",
            _text(getattr(event, "description", ""), 200),
        ]
    )
    return "derived:" + hashlib.sha256(material.encode()).hexdigest()


def _message_for(event: Any) -> Message | None:
    metadata = getattr(event, "metadata", None) or {}
    key = metadata.get("vigil_idempotency_key") if isinstance(metadata, dict) else None
    rows = Message.objects.select_for_update()
    if key:
        found = rows.filter(idempotency_key=str(key)[:200]).first()
        if found is not None:
            return found
    provider_id = _text(getattr(event, "message_id", None), 255)
    if not provider_id:
        return None
    found = rows.filter(provider_message_id=provider_id).first()
    if found is None:
        found = rows.filter(message_id=provider_id).first()
    return found


@transaction.atomic
def tracking_event_record(*, event: Any, esp_name: str) -> MessageEvent | None:
    """Record one tracking event (rules in the module docstring). Returns the new event row,
    or ``None`` when it was already recorded. Idempotent by (provider, event id)."""
    provider = (esp_name or "unknown").lower()[:40]
    event_id = _event_id(event, provider)
    if MessageEvent.objects.filter(provider=provider, event_id=event_id).exists():
        return None
    event_type = _text(getattr(event, "event_type", ""), 20) or "unknown"
    message = _message_for(event)
    recipient = _text(getattr(event, "recipient", None), 254)
    detail = _text(
        getattr(event, "description", None)
        or getattr(event, "mta_response", None)
        or getattr(event, "reject_reason", None),
        500,
    )
    try:
        with transaction.atomic():
            recorded = MessageEvent.objects.create(
                message=message,
                provider=provider,
                event_id=event_id,
                event_type=event_type,
                recipient=recipient,
                provider_message_id=_text(getattr(event, "message_id", None), 255),
                occurred_at=getattr(event, "timestamp", None) or timezone.now(),
                detail=detail,
            )
    except IntegrityError:
        return None  # the same event, recorded by a concurrent delivery of the webhook
    if message is None:
        logger.info("%s %s event for a message Vigil does not track", provider, event_type)
        return recorded
    state = STATES.get(event_type)
    if state is not None and RANK[state] > RANK.get(message.state, 0):
        message.state = state
        message.state_detail = detail
        message.state_changed_at = recorded.occurred_at
        if not message.provider_message_id and recorded.provider_message_id:
            message.provider_message_id = recorded.provider_message_id
        message.save(
            update_fields=["state", "state_detail", "state_changed_at", "provider_message_id"]
        )
    reason = SUPPRESS.get(event_type)
    if reason is not None and message.channel == "email":
        _suppress(message.recipient, reason=reason, detail=f"{provider}: {detail}"[:500])
        if event_type == "unsubscribed":
            _unsubscribe(message)
    return recorded


def _suppress(address: str, *, reason: str, detail: str) -> None:
    address = address.strip()
    if not address:
        return
    if Suppression.objects.annotate(address=Lower("email")).filter(address=address.lower()):
        return
    try:
        with transaction.atomic():
            row = Suppression(email=address, reason=reason, detail=detail)
            audited_save(row, actor=None, reason="reported by the email provider")
    except IntegrityError:
        pass  # suppressed meanwhile


def _unsubscribe(message: Message) -> None:
    now = timezone.now()
    if message.subscriber_id:
        subscriber = Subscriber.objects.select_for_update().get(pk=message.subscriber_id)
        if subscriber.state != SubscriberState.UNSUBSCRIBED:
            subscriber.state = SubscriberState.UNSUBSCRIBED
            subscriber.unsubscribed_at = now
            subscriber.token_version += 1
            audited_save(subscriber, actor=None, reason="unsubscribed at the email provider")
    if message.contact_id:
        contact = CustomerContact.objects.select_for_update().get(pk=message.contact_id)
        if contact.incident_email:
            contact.incident_email = False
            contact.opted_out_at = now
            contact.token_version += 1
            audited_save(contact, actor=None, reason="unsubscribed at the email provider")
