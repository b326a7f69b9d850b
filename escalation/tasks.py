"""Celery tasks of the escalation app: thin wrappers that call one service each."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .services.delivery import notification_send, notification_send_batch, notifications_requeue

# A task that cannot reach the database (a failover, a restart) is retried by Celery with
# backoff: its row is marked published, so the requeue sweep would otherwise leave it until
# the publish lease (VIGIL_PUBLISH_LEASE_SECONDS) runs out.
DATABASE_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 12,
}


@shared_task(
    name="escalation.notification_send",
    acks_late=True,
    soft_time_limit=45,
    time_limit=60,
    ignore_result=True,
    **DATABASE_RETRY,
)
def notification_send_task(notification_id: int) -> str:
    """Send one outbox row. Retries of a failed send are scheduled by the service (one place
    for the rules); a duplicate or stale task finds nothing to claim and does nothing."""
    return notification_send(notification_id=notification_id).result


@shared_task(
    name="escalation.notification_send_batch",
    acks_late=True,
    soft_time_limit=540,
    time_limit=600,
    ignore_result=True,
    **DATABASE_RETRY,
)
def notification_send_batch_task(notification_ids: list[int]) -> int:
    """Send the outbox rows of a bulk enqueue, one after the other; returns how many were
    sent. Rows this task never reaches (it was killed) stay pending for the requeue sweep."""
    return notification_send_batch(notification_ids=notification_ids)


@shared_task(
    name="escalation.requeue_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def requeue_sweep_task() -> int:
    """Re-publish notifications whose send task was lost. Safe to run twice at once."""
    return notifications_requeue()


@shared_task(
    name="escalation.sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def escalation_sweep_task() -> int:
    """Fire due escalation steps and acknowledgement timeouts (beat, every 30 s). Safe to run
    twice at once: rows are claimed with SKIP LOCKED and each step is a unique event."""
    from .services.timers import escalation_sweep

    # Take no new batch (50 rows, one transaction) after 35 s, well before the soft time limit;
    # what is left fires on the next run, 30 s later.
    return len(escalation_sweep(time_budget=35))
