"""The notification outbox through its public surface: enqueue in the causing transaction,
delivery after commit, retries with backoff, permanent failures, recovery of lost work, and the
admin's view of it. Deliveries go to a local HTTP sink through the signed webhook channel."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from config.celery import app
from escalation.models import Notification, NotificationStatus
from escalation.selectors import notification_alerts, outbox_backlog
from escalation.services import (
    notification_enqueue,
    notification_send,
    notifications_requeue,
)
from escalation.services.delivery import backoff_delay
from incidents.models import Kind, Source
from incidents.services import incident_create
from tests import workers
from tests.workers import Reply

http_sink = workers.http_sink
no_external_network = workers.no_external_network

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

KEY_HEADER = "X-Vigil-Idempotency-Key"


@pytest.fixture
def sink(settings, http_sink):
    settings.VIGIL_CHANNEL_BACKENDS = {"webhook": "escalation.channels.webhook.WebhookBackend"}
    settings.VIGIL_WEBHOOK_URL = f"{http_sink.url}/hook"
    settings.VIGIL_WEBHOOK_URLS = {}
    settings.VIGIL_WEBHOOK_SECRET = "outbox-test-secret"
    settings.VIGIL_NOTIFY_MAX_ATTEMPTS = 6
    settings.VIGIL_NOTIFY_BACKOFF_BASE_SECONDS = 10
    settings.VIGIL_NOTIFY_BACKOFF_MAX_SECONDS = 600
    settings.VIGIL_NOTIFY_LEASE_SECONDS = 180
    settings.VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS = 60
    return http_sink


@pytest.fixture
def eager():
    """Tasks published after commit run in this process, so one test can follow a notification
    from the causing transaction to the sink. (The real worker is in test_outbox_worker.)"""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def enqueue(incident=None, key="k-1", **extra):
    fields = {
        "incident": incident,
        "channel": "webhook",
        "recipient": "noc",
        "subject": "Sev 1 incident",
        "body": "Checkout is down.",
        "template": "page",
        "reason": "Initial notification",
        "idempotency_key": key,
    }
    fields.update(extra)
    return notification_enqueue(**fields)


def keys_at(sink) -> list[str]:
    return [request.header(KEY_HEADER) for request in sink.requests()]


# --- enqueue --------------------------------------------------------------------------------------


def test_delivered_after_the_causing_transaction_commits(
    sink, eager, incident, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            notification = enqueue(incident, key="page:1")
            assert Notification.objects.get(pk=notification.pk).status == "pending"
        assert sink.requests() == []  # nothing leaves before the commit

    assert len(callbacks) == 1
    assert keys_at(sink) == ["page:1"]
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.attempts == 1
    assert notification.sent_at is not None


def test_rollback_of_the_causing_transaction_leaves_nothing_behind(
    sink, eager, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        incident = incident_create(actor=None, source=Source.SYSTEM, title="Down", severity=1)
        enqueue(incident, key="page:rolled-back")
        raise RuntimeError("the causing action failed after enqueuing")

    assert not Notification.objects.filter(idempotency_key="page:rolled-back").exists()
    assert callbacks == []
    assert sink.requests() == []


def test_duplicate_key_returns_the_existing_row_unchanged(
    sink, incident, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        first = enqueue(incident, key="page:dup", body="first")
        second = enqueue(incident, key="page:dup", body="second", recipient="other")

    assert second.pk == first.pk
    assert second.body == "first"
    assert Notification.objects.filter(idempotency_key="page:dup").count() == 1
    assert len(callbacks) == 1  # one delivery scheduled, not two


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("channel", "pigeon", "Unknown notification channel"),
        ("recipient", "  ", "needs a recipient"),
        ("idempotency_key", "", "idempotency key"),
    ],
)
def test_enqueue_refuses_bad_input(field, value, message):
    with pytest.raises(ValueError, match=message):
        enqueue(**{field: value})
    assert not Notification.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_enqueues_of_one_key_make_one_row(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def enqueue_in_own_transaction() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                results.append(enqueue(key="page:race").pk)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue_in_own_transaction) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Notification.objects.filter(idempotency_key="page:race").count() == 1
    assert len(set(results)) == 1


# --- delivery outcomes ----------------------------------------------------------------------------


def test_a_delivery_costs_its_claim_and_its_record(sink, incident, django_assert_num_queries):
    """On PostgreSQL the incident the message shows comes back with the claim (one statement),
    so a delivery is two: the claim and the record of the send. Elsewhere the incident is a
    third query. A notification without an incident claims it as nothing."""
    with_incident = enqueue(incident, key="page:with-incident")
    without = enqueue(None, key="page:without-incident")
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 3):
        assert notification_send(notification_id=with_incident.pk).result == "sent"
    with django_assert_num_queries(2):
        assert notification_send(notification_id=without.pk).result == "sent"

    first, second = (request.json() for request in sink.requests())
    incident.refresh_from_db()
    assert first["incident"] == {
        "number": incident.number,
        "title": incident.title,
        "severity": incident.severity_id,
        "status": incident.status,
        "url": f"{settings.VIGIL_BASE_URL}{incident.get_absolute_url()}",
    }
    assert (first["id"], first["attempt"]) == (with_incident.pk, 1)
    assert second["incident"] is None


def test_transient_failure_is_retried_honouring_retry_after(
    sink, incident, django_capture_on_commit_callbacks
):
    notification = enqueue(incident, key="page:flaky")
    sink.reply(Reply(status=500, body="upstream broke", headers={"Retry-After": "120"}))
    started = timezone.now()

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = notification_send(notification_id=notification.pk)

    assert outcome.result == "retry"
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert notification.attempts == 1
    assert "HTTP 500" in notification.last_error
    assert notification.next_attempt_at >= started + timedelta(seconds=120)
    assert len(callbacks) == 1  # the retry is published after the result commits

    with time_machine.travel(notification.next_attempt_at + timedelta(seconds=1)):
        assert notification_send(notification_id=notification.pk).result == "sent"

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.attempts == 2
    assert notification.last_error == ""
    assert keys_at(sink) == ["page:flaky", "page:flaky"]


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 8, 12])
def test_backoff_is_exponential_with_jitter_and_capped(settings, attempts):
    settings.VIGIL_NOTIFY_BACKOFF_BASE_SECONDS = 10
    settings.VIGIL_NOTIFY_BACKOFF_MAX_SECONDS = 600
    ceiling = min(600, 10 * 2 ** (attempts - 1))
    delays = [backoff_delay(attempts=attempts) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len({round(delay, 6) for delay in delays}) > 1  # jittered, not synchronised
    # Never sooner than the provider's Retry-After...
    assert all(
        300 <= backoff_delay(attempts=attempts, retry_after=300) <= max(300, ceiling)
        for _ in range(50)
    )
    # ...up to the longest backoff, not beyond.
    assert backoff_delay(attempts=attempts, retry_after=86400) == 600


def test_permanent_failure_fails_at_once_with_timeline_and_alert(
    sink, incident, django_capture_on_commit_callbacks
):
    notification = enqueue(incident, key="page:rejected")
    sink.reply(Reply(status=400, body="unknown route"))

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = notification_send(notification_id=notification.pk)

    assert outcome.result == "failed"
    assert callbacks == []  # no retry scheduled
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.attempts == 1
    assert notification.failed_at is not None
    assert "HTTP 400" in notification.last_error
    entry = incident.timeline.get(kind=Kind.NOTIFICATION, data__notification=notification.pk)
    assert entry.source == Source.SYSTEM
    assert entry.message.startswith("Notification to noc by Webhook failed after 1 attempt: ")
    assert "HTTP 400" in entry.message

    # A duplicate or late task does nothing: no retry loop.
    assert notification_send(notification_id=notification.pk).result == "skipped"
    assert keys_at(sink) == ["page:rejected"]

    alerts = notification_alerts()
    assert alerts.failed_total == 1
    assert alerts.failed_last_24h == 1
    assert [row.pk for row in alerts.latest] == [notification.pk]


def test_last_transient_attempt_fails_the_notification(settings, sink, incident):
    settings.VIGIL_NOTIFY_MAX_ATTEMPTS = 2
    notification = enqueue(incident, key="page:exhausted")
    sink.reply(Reply(status=503), Reply(status=503))

    assert notification_send(notification_id=notification.pk).result == "retry"
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        assert notification_send(notification_id=notification.pk).result == "failed"

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.attempts == 2
    [entry] = incident.timeline.filter(kind=Kind.NOTIFICATION, data__notification=notification.pk)
    assert "failed after 2 attempts" in entry.message
    assert len(sink.requests()) == 2


class ExplodingBackend:
    def send(self, notification):
        raise ValueError("a bug in a backend")


def test_unexpected_backend_error_is_retried_not_lost(settings, sink):
    settings.VIGIL_CHANNEL_BACKENDS = {"webhook": f"{__name__}.ExplodingBackend"}
    notification = enqueue(key="page:bug")
    outcome = notification_send(notification_id=notification.pk)
    assert outcome.result == "retry"
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert "ValueError: a bug in a backend" in notification.last_error


def test_a_live_claim_is_not_taken_twice_but_a_stale_one_is(sink):
    notification = enqueue(key="page:claimed")
    # Another worker claimed it a moment ago and is sending.
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.SENDING, attempts=1, claimed_at=timezone.now()
    )
    assert notification_send(notification_id=notification.pk).result == "skipped"
    assert sink.requests() == []

    # That worker died: past the lease, the claim is taken over.
    with time_machine.travel(timezone.now() + timedelta(seconds=181)):
        assert notification_send(notification_id=notification.pk).result == "sent"
    notification.refresh_from_db()
    assert notification.attempts == 2
    assert keys_at(sink) == ["page:claimed"]


def test_delivering_a_missing_row_does_nothing(sink):
    assert notification_send(notification_id=987654).result == "skipped"


# --- recovery -------------------------------------------------------------------------------------


def test_requeue_sweep_recovers_lost_and_stuck_deliveries(
    sink, eager, django_capture_on_commit_callbacks
):
    now = timezone.now()
    fresh = enqueue(key="fresh")
    lost = enqueue(key="lost")
    stuck = enqueue(key="stuck")
    live = enqueue(key="live")
    done = enqueue(key="done")
    Notification.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(minutes=5))
    Notification.objects.filter(pk=stuck.pk).update(
        status=NotificationStatus.SENDING, attempts=1, claimed_at=now - timedelta(minutes=10)
    )
    Notification.objects.filter(pk=live.pk).update(
        status=NotificationStatus.SENDING, attempts=1, claimed_at=now
    )
    Notification.objects.filter(pk=done.pk).update(
        status=NotificationStatus.SENT, next_attempt_at=now - timedelta(hours=1)
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert notifications_requeue() == 2
    assert len(callbacks) == 1  # one batch task for both (one queue)
    assert sorted(keys_at(sink)) == ["lost", "stuck"]

    stuck.refresh_from_db()
    assert stuck.status == NotificationStatus.SENT
    assert stuck.attempts == 2
    fresh.refresh_from_db()
    live.refresh_from_db()
    assert (fresh.status, live.status) == (NotificationStatus.PENDING, NotificationStatus.SENDING)

    # Run again at once: nothing is re-queued twice.
    with django_capture_on_commit_callbacks() as callbacks:
        assert notifications_requeue() == 0
    assert callbacks == []


def test_requeue_sweep_marks_what_it_takes_over(sink, django_capture_on_commit_callbacks):
    notification = enqueue(key="stuck")
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.SENDING,
        attempts=1,
        claimed_at=timezone.now() - timedelta(minutes=10),
    )
    with django_capture_on_commit_callbacks():
        notifications_requeue()
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert "worker lost" in notification.last_error


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_requeue_sweeps_at_once_requeue_each_row_once(settings):
    settings.VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS = 60
    past = timezone.now() - timedelta(minutes=5)
    for n in range(60):
        enqueue(key=f"lost-{n}")
    # Their tasks were lost: never published.
    Notification.objects.update(next_attempt_at=past, published_at=None)

    barrier = threading.Barrier(2)
    counts: list[int] = []

    def sweep() -> None:
        try:
            barrier.wait()
            counts.append(notifications_requeue())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(counts) == 60
    assert not Notification.objects.filter(next_attempt_at=past).exists()


# --- reads and the admin --------------------------------------------------------------------------


def test_outbox_backlog_counts(sink):
    now = timezone.now()
    with time_machine.travel(now - timedelta(minutes=7)):
        enqueue(key="old")
    enqueue(key="new")
    sending = enqueue(key="sending")
    failed = enqueue(key="failed")
    Notification.objects.filter(pk=sending.pk).update(status=NotificationStatus.SENDING)
    Notification.objects.filter(pk=failed.pk).update(
        status=NotificationStatus.FAILED, failed_at=now - timedelta(hours=1)
    )

    backlog = outbox_backlog(now=now).as_dict()

    assert backlog["pending"] == 2
    assert backlog["sending"] == 1
    assert backlog["failed_last_24h"] == 1
    assert 419 <= backlog["oldest_pending_age_seconds"] <= 421


def test_admin_lists_notifications_read_only(client, superuser, sink, incident):
    notification = enqueue(incident, key="page:admin")
    client.force_login(superuser)

    listing = client.get(reverse("admin:escalation_notification_changelist") + "?status=pending")
    assert listing.status_code == 200
    assert incident.number in listing.content.decode()

    page = client.get(reverse("admin:escalation_notification_change", args=[notification.pk]))
    assert page.status_code == 200
    assert "page:admin" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert client.get(reverse("admin:escalation_notification_add")).status_code == 403


def test_admin_retry_now_resends_a_failed_notification(
    client, superuser, sink, eager, incident, django_capture_on_commit_callbacks
):
    notification = enqueue(incident, key="page:retry")
    sent = enqueue(incident, key="page:already-sent")
    sink.reply(Reply(status=404))
    notification_send(notification_id=notification.pk)
    Notification.objects.filter(pk=sent.pk).update(status=NotificationStatus.SENT)
    client.force_login(superuser)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:escalation_notification_changelist"),
            {"action": "retry_now", "_selected_action": [notification.pk, sent.pk]},
            follow=True,
        )

    text = response.content.decode()
    assert "1 notification(s) queued for delivery now." in text
    assert "1 notification(s) left alone" in text
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.attempts == 1  # a fresh budget after the failure
    assert keys_at(sink) == ["page:retry", "page:retry"]
    retried = incident.timeline.filter(kind=Kind.NOTIFICATION, actor=superuser).get()
    assert "sent again by hand after it failed" in retried.message
    assert retried.source == Source.ADMIN


def test_retry_needs_the_change_permission(client, make_user, sink):
    notification = enqueue(key="page:forbidden")
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.FAILED, failed_at=timezone.now(), attempts=6
    )
    viewer = make_user(username="watcher")
    viewer.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(viewer)

    listing = client.get(reverse("admin:escalation_notification_changelist"))
    assert listing.status_code == 200
    assert "retry_now" not in listing.content.decode()
    client.post(
        reverse("admin:escalation_notification_changelist"),
        {"action": "retry_now", "_selected_action": [notification.pk]},
    )
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.FAILED, 6)


def test_incident_page_shows_its_notifications(client, superuser, sink, incident):
    enqueue(incident, key="page:inline", recipient="noc-inline")
    client.force_login(superuser)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "notifications (delivery status)" in text.lower()
    assert "noc-inline" in text


def test_admin_index_carries_the_failed_notification_alert(client, superuser, sink, incident):
    notification = enqueue(incident, key="page:index-alert")
    sink.reply(Reply(status=400))
    notification_send(notification_id=notification.pk)
    client.force_login(superuser)

    response = client.get(reverse("admin:index"))

    alerts = response.context["vigil_notification_alerts"]
    assert alerts.failed_total == 1
    assert [row.pk for row in alerts.latest] == [notification.pk]
    page = response.content.decode()
    assert "Notifications that failed" in page
    assert reverse("admin:escalation_notification_change", args=[notification.pk]) in page
    assert incident.number in page


def test_admin_index_shows_no_failed_notification_alert_when_all_delivered(
    client, superuser, incident
):
    client.force_login(superuser)

    page = client.get(reverse("admin:index")).content.decode()

    assert "Notifications that failed" not in page
