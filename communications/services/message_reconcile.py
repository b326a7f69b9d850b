"""Keeping customer-facing messages' delivery states in step with the outbox: a queued message
is marked ``sent`` (with the provider's id) or ``failed`` once its outbox row is, for the
admin's delivery counts."""

from __future__ import annotations

import time

from django.db import transaction
from django.utils import timezone

from escalation.outbox import NotificationStatus, notification_states

from ..models import DeliveryState, Message

__all__ = ["messages_reconcile"]


RECONCILE_CHUNK = 500

SENT_STATES = {
    NotificationStatus.SENT: DeliveryState.SENT,
    NotificationStatus.FAILED: DeliveryState.FAILED,
}


def messages_reconcile(*, time_budget: float = 20.0) -> int:
    """Mark queued messages ``sent`` (with the provider's id) or ``failed`` as their outbox
    rows are. Returns how many changed. A tracking event that already moved a message on is
    never undone: only rows still ``queued`` under the row lock change (the tracking receiver
    takes the same lock)."""
    deadline = time.monotonic() + time_budget
    changed = 0
    after = 0
    while time.monotonic() < deadline:
        rows = list(
            Message.objects.filter(state=DeliveryState.QUEUED, pk__gt=after)
            .order_by("pk")
            .values_list("pk", "idempotency_key")[:RECONCILE_CHUNK]
        )
        if not rows:
            break
        after = rows[-1][0]
        states = notification_states(idempotency_keys=[key for _, key in rows])
        moved = {
            pk: states[key]
            for pk, key in rows
            if key in states and states[key].status in SENT_STATES
        }
        if not moved:
            continue
        now = timezone.now()
        with transaction.atomic():
            locked = list(
                Message.objects.select_for_update()
                .filter(pk__in=list(moved), state=DeliveryState.QUEUED)
                .only("pk", "state")
            )
            for message in locked:
                state = moved[message.pk]
                message.state = SENT_STATES[state.status]
                message.state_changed_at = state.sent_at or now
                message.provider_message_id = state.provider_message_id[:255]
                message.state_detail = (
                    state.last_error[:500] if state.status == NotificationStatus.FAILED else ""
                )
            Message.objects.bulk_update(
                locked,
                ["state", "state_changed_at", "provider_message_id", "state_detail"],
                batch_size=500,
            )
        changed += len(locked)
    return changed
