"""Writes of the escalation app. Admin, API, receivers and tasks call these and nothing else."""

from .outbox import (
    notification_deliver,
    notification_enqueue,
    notification_retry,
    notifications_requeue,
)

__all__ = [
    "notification_deliver",
    "notification_enqueue",
    "notification_retry",
    "notifications_requeue",
]
