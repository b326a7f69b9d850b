"""Who a fan-out reaches: the active subscribers (email and webhook) to the components a status
update or maintenance window concerns, and for a customer-facing incident of a severity the
policy emails, the contacts of the customers using the affected services. Each address once,
suppressed addresses left out; and each message's idempotency key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q
from django.db.models.functions import Lower

from incidents.models import MessageChannel, Service

from ..models import (
    Component,
    CustomerContact,
    Fanout,
    MessageAudience,
    StatusUpdate,
    StatusUpdateComponent,
    Subscriber,
    SubscriberKind,
    SubscriberState,
    Suppression,
    UpdateState,
)
from .policy import communication_policy_get

__all__ = ["Recipient", "fanout_recipients", "message_key"]


@dataclass(frozen=True)
class Recipient:
    address: str  # an email address, lower-cased, or a webhook URL
    channel: str
    audience: str
    subscriber: Subscriber | None = None
    contact: CustomerContact | None = None


def message_key(fanout: Fanout, address: str) -> str:
    """The idempotency key of the message of ``fanout``'s publication to ``address``: the
    same for every run, whichever list the address came from."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:40]
    if fanout.status_update_id:
        return f"comms:update:{fanout.status_update_id}:{digest}"
    return f"comms:maintenance:{fanout.maintenance_id}:{fanout.step}:{digest}"


def _update_components(update: StatusUpdate) -> set[int]:
    """The components an incident's update concerns: those its published updates up to this
    one named, and those of the incident's services."""
    named = StatusUpdateComponent.objects.filter(
        status_update__incident_id=update.incident_id,
        status_update__state=UpdateState.PUBLISHED,
        status_update__published_at__lte=update.published_at,
    ).values_list("component_id", flat=True)
    services = Component.objects.filter(
        service__in=update.incident.services.values("pk")
    ).values_list("pk", flat=True)
    own = update.affected.values_list("component_id", flat=True)
    return set(named) | set(services) | set(own)


def _subscribers(components: set[int], *, maintenance: bool) -> Iterable[Subscriber]:
    rows = Subscriber.objects.filter(state=SubscriberState.ACTIVE)
    if maintenance:
        rows = rows.filter(maintenance_notices=True)
    matching = Q(all_components=True)
    if components:
        matching |= Q(components__in=components)
    # Deduplicated by primary key: a subscriber to two of the components matches twice.
    ids = rows.filter(matching).values_list("pk", flat=True).distinct()
    return (
        Subscriber.objects.filter(pk__in=ids)
        .only("pk", "kind", "email", "url", "token_version")
        .order_by("pk")
        .iterator(chunk_size=2000)
    )


def _customer_contacts(update: StatusUpdate) -> Iterable[CustomerContact]:
    incident = update.incident
    if not incident.customer_facing:
        return []
    if incident.severity_id not in (communication_policy_get().customer_email_severities or []):
        return []
    services = set(incident.services.values_list("pk", flat=True))
    services |= set(
        Service.objects.filter(component__in=update.affected.values("component_id")).values_list(
            "pk", flat=True
        )
    )
    if not services:
        return []
    ids = (
        CustomerContact.objects.filter(incident_email=True, customer__services__in=services)
        .values_list("pk", flat=True)
        .distinct()
    )
    return (
        CustomerContact.objects.filter(pk__in=ids)
        .only("pk", "email", "token_version", "customer_id")
        .order_by("pk")
        .iterator(chunk_size=2000)
    )


def _suppressed(addresses: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(addresses), 500):
        found.update(
            Suppression.objects.annotate(address=Lower("email"))
            .filter(address__in=addresses[start : start + 500])
            .values_list("address", flat=True)
        )
    return found


def fanout_recipients(fanout: Fanout) -> list[Recipient]:
    """Everyone ``fanout``'s publication goes to, each address once, suppressed ones left
    out, in a stable order (subscribers by id, then contacts by id)."""
    if fanout.status_update_id:
        update = fanout.status_update
        components = _update_components(update)
        subscribers = _subscribers(components, maintenance=False)
        contacts = _customer_contacts(update)
    else:
        components = set(fanout.maintenance.components.values_list("pk", flat=True))
        subscribers = _subscribers(components, maintenance=True)
        contacts = []
    chosen: dict[str, Recipient] = {}
    for subscriber in subscribers:
        if subscriber.kind == SubscriberKind.WEBHOOK:
            url = (subscriber.url or "").strip()
            if url:
                chosen.setdefault(
                    url,
                    Recipient(
                        url, MessageChannel.SUBSCRIBER, MessageAudience.SUBSCRIBER, subscriber
                    ),
                )
            continue
        address = (subscriber.email or "").strip().lower()
        if address:
            chosen.setdefault(
                address,
                Recipient(address, MessageChannel.EMAIL, MessageAudience.SUBSCRIBER, subscriber),
            )
    for contact in contacts:
        address = (contact.email or "").strip().lower()
        if address:
            chosen.setdefault(
                address,
                Recipient(address, MessageChannel.EMAIL, MessageAudience.CUSTOMER, contact=contact),
            )
    emails = [a for a, r in chosen.items() if r.channel == MessageChannel.EMAIL]
    suppressed = _suppressed(emails)
    return [r for a, r in chosen.items() if a not in suppressed]
