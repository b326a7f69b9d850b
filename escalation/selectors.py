"""Reads of the escalation app's delivery side: the outbox backlog and failed notifications."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from incidents.models import Incident

from .models import Notification, NotificationStatus

__all__ = [
    "NotificationAlerts",
    "OutboxBacklog",
    "notification_alerts",
    "notification_get",
    "notification_list",
    "notification_states",
    "outbox_backlog",
]

ALERT_WINDOW = timedelta(hours=24)


def notification_list(*, incident: Incident | None = None) -> QuerySet[Notification]:
    """Notifications newest first, with what a list row shows in one query."""
    rows = Notification.objects.select_related("incident", "contact")
    if incident is not None:
        rows = rows.filter(incident=incident)
    return rows.order_by("-created_at", "-id")


def notification_get(*, idempotency_key: str) -> Notification | None:
    """The notification enqueued under ``idempotency_key`` (its status, attempts, last error),
    or None if there is none. A unique-index lookup."""
    return Notification.objects.filter(idempotency_key=idempotency_key).first()


@dataclass(frozen=True)
class NotificationState:
    """What became of one outbox row, for an app that tracks its own messages."""

    status: str
    provider_message_id: str
    sent_at: datetime | None
    last_error: str


def notification_states(*, idempotency_keys: list[str]) -> dict[str, NotificationState]:
    """The state of each notification among ``idempotency_keys`` that has a row, by key: one
    query per 500 keys on the unique key index."""
    found: dict[str, NotificationState] = {}
    for start in range(0, len(idempotency_keys), 500):
        rows = Notification.objects.filter(
            idempotency_key__in=idempotency_keys[start : start + 500]
        ).values_list("idempotency_key", "status", "provider_message_id", "sent_at", "last_error")
        for key, status, provider_id, sent_at, error in rows:
            found[key] = NotificationState(status, provider_id or "", sent_at, error or "")
    return found


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int
    sending: int
    oldest_pending_at: datetime | None
    failed_last_24h: int
    now: datetime
    # Every notification failed and not retried since (the admin index's failed count).
    failed: int = 0

    @property
    def oldest_pending_age_seconds(self) -> float | None:
        if self.oldest_pending_at is None:
            return None
        return max(0.0, (self.now - self.oldest_pending_at).total_seconds())

    def as_dict(self) -> dict:
        age = self.oldest_pending_age_seconds
        return {
            "pending": self.pending,
            "sending": self.sending,
            "oldest_pending_age_seconds": None if age is None else round(age, 1),
            "failed_last_24h": self.failed_last_24h,
        }


def outbox_backlog(*, now: datetime | None = None) -> OutboxBacklog:
    """Counts of undelivered notifications in two queries, both on partial indexes (failed:
    in the last 24 hours, and all not retried since)."""
    now = now or timezone.now()
    waiting = Notification.objects.filter(
        status__in=[NotificationStatus.PENDING, NotificationStatus.SENDING]
    ).aggregate(
        pending=Count("pk", filter=Q(status=NotificationStatus.PENDING)),
        sending=Count("pk", filter=Q(status=NotificationStatus.SENDING)),
        oldest=Min("created_at"),
    )
    failed = Notification.objects.filter(status=NotificationStatus.FAILED).aggregate(
        total=Count("pk"), recent=Count("pk", filter=Q(failed_at__gte=now - ALERT_WINDOW))
    )
    return OutboxBacklog(
        pending=waiting["pending"],
        sending=waiting["sending"],
        oldest_pending_at=waiting["oldest"],
        failed_last_24h=failed["recent"],
        now=now,
        failed=failed["total"],
    )


@dataclass(frozen=True)
class NotificationAlerts:
    """Failed notifications for the admin index: how many in the window, and the latest."""

    failed_last_24h: int
    failed_total: int
    latest: list[Notification] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.failed_total > 0


def notification_alerts(*, now: datetime | None = None, limit: int = 5) -> NotificationAlerts:
    """Notifications that are failed (and not retried since), newest first.

    A failed page means someone was not told about an incident; the admin index lists them
    until an operator retries them (which moves them out of ``failed``).
    """
    now = now or timezone.now()
    failed = Notification.objects.filter(status=NotificationStatus.FAILED)
    counts = failed.aggregate(
        total=Count("pk"), recent=Count("pk", filter=Q(failed_at__gte=now - ALERT_WINDOW))
    )
    latest = list(
        failed.select_related("incident", "contact").order_by("-failed_at", "-id")[:limit]
    )
    return NotificationAlerts(
        failed_last_24h=counts["recent"], failed_total=counts["total"], latest=latest
    )
