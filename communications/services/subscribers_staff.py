"""Subscribers and the suppression list as staff manage them (admin or API): registering webhook
subscribers, removing subscribers, and adding addresses to or taking them off the suppression
list. Each write checks the role permission and leaves a history record naming the actor.

**Webhook subscribers** are staff's: their URL is checked against request forgery
(``escalation.outbox.subscriber_webhook_url_problem``), they are active at once, and the key
their bodies are signed with is returned once, at creation.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from escalation.outbox import subscriber_webhook_secret, subscriber_webhook_url_problem
from incidents.errors import InvalidInput
from incidents.services.common import audited_delete, audited_save

from ..errors import require
from ..models import Subscriber, SubscriberKind, SubscriberState, Suppression, SuppressionReason
from .subscriptions import (
    email_address_clean,
    subscription_apply,
    subscription_apply_components,
    subscription_clean,
)

__all__ = [
    "subscriber_delete",
    "subscriber_webhook_create",
    "suppression_add",
    "suppression_remove",
]


@transaction.atomic
def subscriber_webhook_create(
    *,
    actor: Any,
    source: str,
    url: Any,
    all_components: bool = True,
    components: Any = (),
    maintenance_notices: bool = True,
) -> tuple[Subscriber, str]:
    """Register a webhook subscriber (active at once) and return it with the key its bodies
    are signed with — shown once; it is derived from the URL, never stored. Refuses (400) a URL
    Vigil will not send to (see ``subscriber_webhook_url_problem``) or one already registered."""
    require(actor, "communications.add_subscriber", "add a subscriber")
    url = url.strip() if isinstance(url, str) else ""
    problem = subscriber_webhook_url_problem(url)
    if problem:
        raise InvalidInput({"url": problem})
    subscription = subscription_clean(
        all_components=all_components,
        components=list(components) if isinstance(components, list | tuple) else components,
        maintenance_notices=maintenance_notices,
    )
    if Subscriber.objects.filter(kind=SubscriberKind.WEBHOOK, url=url).exists():
        raise InvalidInput({"url": "This URL is already a subscriber."})
    subscriber = Subscriber(
        kind=SubscriberKind.WEBHOOK,
        url=url,
        state=SubscriberState.ACTIVE,
        confirmed_at=timezone.now(),
    )
    subscription_apply(subscriber, subscription)
    try:
        with transaction.atomic():
            audited_save(subscriber, actor=actor, reason=f"webhook subscriber added ({source})")
    except IntegrityError as exc:
        raise InvalidInput({"url": "This URL is already a subscriber."}) from exc
    subscription_apply_components(subscriber, subscription)
    return subscriber, subscriber_webhook_secret(url)


@transaction.atomic
def subscriber_delete(*, subscriber: Subscriber, actor: Any, source: str) -> None:
    """Remove a subscriber (email or webhook) for good; its history keeps who did it."""
    require(actor, "communications.delete_subscriber", "remove a subscriber")
    locked = Subscriber.objects.select_for_update().filter(pk=subscriber.pk).first()
    if locked is None:
        return
    audited_delete(locked, actor=actor, reason=f"removed by staff ({source})")


@transaction.atomic
def suppression_add(
    *,
    actor: Any,
    source: str,
    email: Any,
    reason: str = SuppressionReason.MANUAL,
    detail: Any = "",
) -> Suppression:
    """Put an address on the suppression list (no customer-facing mail goes to it).
    Idempotent: an address already on it is returned unchanged. ``actor`` None is Vigil
    itself (bounces and complaints)."""
    require(actor, "communications.add_suppression", "add a suppression")
    address = email_address_clean(email)
    if reason not in SuppressionReason.values:
        raise InvalidInput({"reason": f"Unknown reason {reason!r}."})
    detail = detail.strip() if isinstance(detail, str) else ""
    if len(detail) > 500:
        raise InvalidInput({"detail": "At most 500 characters."})
    existing = Suppression.objects.filter(email__iexact=address).first()
    if existing is not None:
        return existing
    row = Suppression(email=address, reason=reason, detail=detail, created_by=actor)
    try:
        with transaction.atomic():
            audited_save(row, actor=actor, reason=f"suppressed ({source})")
    except IntegrityError:
        return Suppression.objects.get(email__iexact=address)
    return row


@transaction.atomic
def suppression_remove(*, suppression: Suppression, actor: Any, source: str) -> None:
    """Take an address off the suppression list; its history keeps who did it and when."""
    require(actor, "communications.delete_suppression", "remove a suppression")
    locked = Suppression.objects.select_for_update().filter(pk=suppression.pk).first()
    if locked is None:
        return
    audited_delete(locked, actor=actor, reason=f"removed by staff ({source})")
