"""Accepting deliveries: one row per accepted POST, its processing queued after commit, and the
sweep that re-queues what a lost task left behind.

The request only stores the raw body (one INSERT) and publishes a task, so a sender is
answered in milliseconds whatever the processing costs (opening an incident pages people);
the row, not the broker message, is the record, so a task lost with its worker or a broker
that refused the message loses nothing: the sweep finds the pending row and queues it again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import DeliveryStatus, Integration, WebhookDelivery

logger = logging.getLogger(__name__)

DEFAULT_REQUEUE_AFTER = 60.0
REQUEUE_BATCH = 500


def delivery_accept(
    *,
    integration: Integration,
    body: str,
    headers: dict[str, str],
    remote_addr: str | None,
    alert_count: int,
    dedup_key: str = "",
) -> WebhookDelivery:
    """Store a verified, valid delivery and queue its processing after commit. Not
    idempotent: a sender's retry is a second delivery (its alerts are deduplicated when
    processed)."""
    delivery = WebhookDelivery.objects.create(
        integration=integration,
        body=body,
        headers=headers,
        remote_addr=remote_addr,
        alert_count=alert_count,
        dedup_key=dedup_key,
    )
    transaction.on_commit(lambda: delivery_enqueue(delivery_id=delivery.pk))
    return delivery


def delivery_enqueue(*, delivery_id: int) -> bool:
    """Publish the processing task. A broker failure is logged, not raised: the delivery is
    stored and the sweep will queue it again."""
    from ..tasks import alert_delivery_process_task

    try:
        alert_delivery_process_task.apply_async(args=[delivery_id])
    except Exception:
        logger.exception("Could not queue webhook delivery %s; the sweep will", delivery_id)
        return False
    return True


def deliveries_requeue(*, now: datetime | None = None, batch: int = REQUEUE_BATCH) -> int:
    """Queue again the deliveries still pending ``VIGIL_ALERT_REQUEUE_AFTER_SECONDS`` after
    receipt (their task was lost, or failed and awaits a retry), oldest first. Safe to run
    twice at once: a duplicate task finds the delivery claimed or processed and does
    nothing. Returns how many were queued."""
    now = now or timezone.now()
    after = timedelta(
        seconds=getattr(settings, "VIGIL_ALERT_REQUEUE_AFTER_SECONDS", DEFAULT_REQUEUE_AFTER)
    )
    ids = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, received_at__lt=now - after)
        .order_by("received_at")
        .values_list("pk", flat=True)[:batch]
    )
    queued = sum(delivery_enqueue(delivery_id=pk) for pk in ids)
    if ids:
        logger.info("Re-queued %s pending webhook deliveries", queued)
    return queued


@transaction.atomic
def delivery_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Give a failed (or stuck) delivery a fresh set of attempts and queue it after commit
    (admin action, once the cause is fixed). A processed delivery is left alone: its alerts
    exist. Idempotent."""
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if locked.status == DeliveryStatus.PROCESSED:
        return locked
    locked.status = DeliveryStatus.PENDING
    locked.attempts = 0
    locked.error = ""
    locked.processed_at = None
    locked.save(update_fields=["status", "attempts", "error", "processed_at"])
    transaction.on_commit(lambda: delivery_enqueue(delivery_id=locked.pk))
    return locked
