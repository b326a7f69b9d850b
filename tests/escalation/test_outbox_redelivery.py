"""What the outbox guarantees when a send "crashes" after the provider accepted the message:
at-least-once delivery, every copy carrying the same idempotency key (email: the same
Message-ID), so a receiver can drop the repeat. And the one part of that window Vigil can close:
a failed write of the result is tried again before the message is given up to the lease."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import OperationalError
from django.utils import timezone

from escalation.models import Notification, NotificationStatus
from escalation.services import (
    delivery,
    notification_enqueue,
    notification_send,
    notifications_requeue,
)
from incidents.queue import WorkQueue
from tests import workers

http_sink = workers.http_sink
no_external_network = workers.no_external_network

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

LEASE = 180


@pytest.fixture
def outbox_settings(settings):
    settings.VIGIL_NOTIFY_LEASE_SECONDS = LEASE
    settings.VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS = 60
    settings.VIGIL_NOTIFY_MAX_ATTEMPTS = 6
    return settings


@pytest.fixture
def webhook(outbox_settings, http_sink):
    outbox_settings.VIGIL_CHANNEL_BACKENDS = {
        "webhook": "escalation.channels.webhook.WebhookBackend"
    }
    outbox_settings.VIGIL_WEBHOOK_URL = f"{http_sink.url}/hook"
    outbox_settings.VIGIL_WEBHOOK_URLS = {}
    outbox_settings.VIGIL_WEBHOOK_SECRET = "redelivery-secret"
    return http_sink


class RecordingFails:
    """The database refuses the write that records a send (``failures`` times, or always),
    after the provider has accepted the message."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, failures: int | None = None) -> None:
        self.failures = failures
        self.calls = 0
        real = WorkQueue.complete

        def complete(queue, row, **fields):
            self.calls += 1
            if self.failures is None or self.calls <= self.failures:
                raise OperationalError("server closed the connection unexpectedly")
            return real(queue, row, **fields)

        monkeypatch.setattr(WorkQueue, "complete", complete)
        # The pauses between tries of the write, shortened for the test.
        monkeypatch.setattr(delivery, "RECORD_RETRY_DELAYS", (0.0, 0.0, 0.0))

    def heal(self) -> None:
        self.failures = 0


def enqueue(channel: str, recipient: str, key: str) -> Notification:
    return notification_enqueue(
        incident=None,
        channel=channel,
        recipient=recipient,
        subject="Sev 1: checkout down",
        body="Checkout is down.",
        template="page",
        reason="Initial notification",
        idempotency_key=key,
    )


def crash_then_recover(notification: Notification, database: RecordingFails) -> None:
    """The first attempt reaches the provider and then cannot be recorded; after the lease,
    the requeue sweep takes the row back and the next attempt sends it again."""
    with pytest.raises(OperationalError):
        notification_send(notification_id=notification.pk)
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENDING, 1)

    database.heal()
    with time_machine.travel(timezone.now() + timedelta(seconds=LEASE + 1)):
        assert notifications_requeue() == 1
        assert notification_send(notification_id=notification.pk).result == "sent"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENT, 2)


def test_a_webhook_resent_after_a_crash_carries_the_same_idempotency_key(webhook, monkeypatch):
    notification = enqueue("webhook", "noc", "page:42:c7:webhook")

    crash_then_recover(notification, RecordingFails(monkeypatch))

    first, second = webhook.requests()
    for request in (first, second):
        # The header receivers deduplicate on (draft-ietf-httpapi-idempotency-key-header), and
        # Vigil's own, and the body's copy: the same for every copy of this message.
        assert request.header("Idempotency-Key") == "page:42:c7:webhook"
        assert request.header("X-Vigil-Idempotency-Key") == "page:42:c7:webhook"
        assert request.json()["idempotency_key"] == "page:42:c7:webhook"
    assert [first.json()["attempt"], second.json()["attempt"]] == [1, 2]


def test_an_email_resent_after_a_crash_has_the_same_message_id(outbox_settings, monkeypatch):
    outbox_settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    outbox_settings.VIGIL_CHANNEL_BACKENDS = {"email": "escalation.channels.email.EmailBackend"}
    notification = enqueue("email", "im@example.org", "page:42:c7:email")

    crash_then_recover(notification, RecordingFails(monkeypatch))

    first, second = (message.message() for message in mail.outbox)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["X-Vigil-Idempotency-Key"] == second["X-Vigil-Idempotency-Key"]
    assert first["X-Vigil-Idempotency-Key"] == "page:42:c7:email"


def test_a_brief_database_failure_while_recording_does_not_resend(webhook, monkeypatch):
    notification = enqueue("webhook", "noc", "page:43:c7:webhook")
    database = RecordingFails(monkeypatch, failures=2)

    outcome = notification_send(notification_id=notification.pk)

    assert outcome.result == "sent"
    assert database.calls == 3
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENT, 1)
    with time_machine.travel(timezone.now() + timedelta(seconds=LEASE + 1)):
        assert notifications_requeue() == 0
    assert len(webhook.requests()) == 1
