"""The outbox with real processes: a Celery worker (and beat) on Redis, the test database on
PostgreSQL, a local HTTP sink as the provider. These are the failures only real processes show:
a task lost after commit, a worker killed mid-send, retries scheduled through the broker."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from escalation.health import ESCALATION_SWEEP_KEY, SLA_SWEEP_KEY
from escalation.models import Notification, NotificationStatus
from escalation.selectors import notification_alerts
from escalation.services import notification_enqueue
from incidents.models import Kind, SlaBreach, SlaTarget, Source
from incidents.services import incident_create
from tests import workers
from tests.workers import Reply, purge_broker, wait_for

celery_worker = workers.celery_worker
http_sink = workers.http_sink
no_external_network = workers.no_external_network

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("no_external_network"),
]

KEY_HEADER = "X-Vigil-Idempotency-Key"
LOG_BACKEND = "escalation.channels.log.LogBackend"


def worker_env(sink, **extra: str) -> dict[str, str]:
    env = {
        "VIGIL_CHANNEL_WEBHOOK": "escalation.channels.webhook.WebhookBackend",
        "VIGIL_WEBHOOK_URL": f"{sink.url}/hook",
        "VIGIL_WEBHOOK_SECRET": "worker-test-secret",
        # Pages written when a test incident is logged go to the log, never to a provider.
        "VIGIL_CHANNEL_EMAIL": LOG_BACKEND,
        "VIGIL_CHANNEL_SLACK": LOG_BACKEND,
        "VIGIL_CHANNEL_SMS": LOG_BACKEND,
        "VIGIL_CHANNEL_PHONE": LOG_BACKEND,
        "VIGIL_CHANNEL_TEAMS": LOG_BACKEND,
    }
    env.update(extra)
    return env


# A page to the webhook sink, as these tests write it (each with its own key).
PAGE = {
    "channel": "webhook",
    "recipient": "noc",
    "subject": "Sev 1: checkout down",
    "body": "Checkout is down.",
    "template": "page",
    "reason": "Initial notification",
}


def enqueue(key: str, incident=None) -> Notification:
    with transaction.atomic():
        return notification_enqueue(incident=incident, idempotency_key=key, **PAGE)


def status_of(notification: Notification) -> str:
    return Notification.objects.values_list("status", flat=True).get(pk=notification.pk)


def keys_at(sink) -> list[str]:
    return [request.header(KEY_HEADER) for request in sink.requests()]


def test_a_task_lost_after_commit_is_delivered_exactly_once(celery_worker, http_sink):
    notification = enqueue("lost:1")
    # The row is committed and its task published (and the row marked so); losing the task
    # now is what a broker restarting without its data does: the sweep publishes it again
    # once the publish lease runs out.
    purge_broker()
    assert status_of(notification) == NotificationStatus.PENDING

    env = worker_env(
        http_sink, VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS="1", VIGIL_PUBLISH_LEASE_SECONDS="2"
    )
    celery_worker.worker(env)
    celery_worker.beat({**env, "VIGIL_OUTBOX_REQUEUE_SECONDS": "1"})

    wait_for(lambda: status_of(notification) == NotificationStatus.SENT, timeout=60)
    time.sleep(3)  # several more requeue sweeps run; none may deliver it again
    assert keys_at(http_sink) == ["lost:1"]
    notification.refresh_from_db()
    assert notification.attempts == 1


def test_a_worker_killed_mid_delivery_ends_delivered_and_recorded_once(celery_worker, http_sink):
    held = threading.Event()
    http_sink.reply(Reply(hold=held))  # the provider accepts the first request, then hangs
    first = celery_worker.worker(worker_env(http_sink))

    notification = enqueue("killed:1")
    wait_for(lambda: len(http_sink.requests()) == 1, timeout=30, what="the first delivery")
    first.kill()  # SIGKILL: worker and pool child die mid-send, the row stays claimed
    held.set()
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENDING, 1)

    env = worker_env(
        http_sink, VIGIL_NOTIFY_LEASE_SECONDS="2", VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS="1"
    )
    celery_worker.worker(env)
    celery_worker.beat({**env, "VIGIL_OUTBOX_REQUEUE_SECONDS": "1"})

    wait_for(lambda: status_of(notification) == NotificationStatus.SENT, timeout=60)
    time.sleep(3)
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.attempts == 2
    assert notification.sent_at is not None
    # The provider saw it twice (the first answer was lost with the worker), and can tell.
    assert keys_at(http_sink) == ["killed:1", "killed:1"]


def test_a_pool_process_killed_mid_delivery_is_recovered_by_its_worker(celery_worker, http_sink):
    held = threading.Event()
    http_sink.reply(Reply(hold=held))
    env = worker_env(
        http_sink, VIGIL_NOTIFY_LEASE_SECONDS="2", VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS="1"
    )
    worker = celery_worker.worker(env)
    celery_worker.beat({**env, "VIGIL_OUTBOX_REQUEUE_SECONDS": "1"})

    notification = enqueue("oom:1")
    wait_for(lambda: len(http_sink.requests()) == 1, timeout=30, what="the first delivery")
    # Only the pool process dies (the OOM killer's choice); the worker itself lives on and
    # hands the unacknowledged task out again.
    for pid in worker.children():
        os.kill(pid, signal.SIGKILL)
    held.set()

    wait_for(lambda: status_of(notification) == NotificationStatus.SENT, timeout=60)
    time.sleep(3)
    assert worker.alive
    notification.refresh_from_db()
    assert notification.attempts == 2
    assert keys_at(http_sink) == ["oom:1", "oom:1"]


def test_a_provider_answering_500_then_200_is_retried_after_retry_after(celery_worker, http_sink):
    http_sink.reply(Reply(status=500, body="try later", headers={"Retry-After": "2"}))
    celery_worker.worker(worker_env(http_sink, VIGIL_NOTIFY_BACKOFF_BASE_SECONDS="0.1"))

    notification = enqueue("flaky:1")

    wait_for(lambda: status_of(notification) == NotificationStatus.SENT, timeout=60)
    first, second = http_sink.requests()
    assert second.at - first.at >= 2.0  # the provider's Retry-After, not the 0.1 s backoff
    assert [first.header(KEY_HEADER), second.header(KEY_HEADER)] == ["flaky:1", "flaky:1"]
    notification.refresh_from_db()
    assert notification.attempts == 2
    assert notification.last_error == ""


def test_the_pages_of_a_batch_that_all_failed_are_retried_together_after_retry_after(
    celery_worker, http_sink
):
    """A provider down for a whole batch: the worker sends every page again, after the
    provider's Retry-After, in the order written (the failures' retries travel as batch tasks
    with a countdown; which tasks are published is checked in test_outbox_batch.py)."""
    from escalation.outbox import OutboxMessage, notification_enqueue_many
    from incidents.events import default_queue

    for _ in range(6):
        http_sink.reply(Reply(status=503, body="down", headers={"Retry-After": "2"}))
    celery_worker.worker(worker_env(http_sink, VIGIL_NOTIFY_BACKOFF_BASE_SECONDS="0.1"))
    keys = [f"storm:{n}" for n in range(6)]
    with transaction.atomic():
        notification_enqueue_many(
            [OutboxMessage(idempotency_key=key, **PAGE) for key in keys], queue=default_queue()
        )

    rows = Notification.objects.filter(idempotency_key__in=keys)
    wait_for(lambda: rows.filter(status=NotificationStatus.SENT).count() == 6, timeout=60)
    requests = http_sink.requests()
    assert [request.header(KEY_HEADER) for request in requests] == keys + keys
    # The provider's Retry-After, not the 0.1 s backoff, between the last failure and the
    # first retry.
    assert requests[6].at - requests[5].at >= 2.0
    assert sorted(rows.values_list("attempts", flat=True)) == [2] * 6


def test_a_provider_answering_400_fails_without_retry_loops(celery_worker, http_sink):
    http_sink.default = Reply(status=400, body="no such hook")
    incident = incident_create(actor=None, source=Source.SYSTEM, title="Checkout down", severity=2)
    env = worker_env(http_sink, VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS="1")
    celery_worker.worker(env)
    celery_worker.beat({**env, "VIGIL_OUTBOX_REQUEUE_SECONDS": "1"})

    notification = enqueue("rejected:1", incident=incident)

    wait_for(lambda: status_of(notification) == NotificationStatus.FAILED, timeout=60)
    time.sleep(3)
    assert keys_at(http_sink) == ["rejected:1"]
    notification.refresh_from_db()
    assert notification.attempts == 1
    entry = incident.timeline.get(kind=Kind.NOTIFICATION, data__notification=notification.pk)
    assert "failed after 1 attempt" in entry.message
    assert notification.pk in [row.pk for row in notification_alerts().latest]


def test_beat_and_worker_run_the_sweeps_and_the_watchdog_sees_them(
    celery_worker, http_sink, client, superuser
):
    client.force_login(superuser)  # a staff session sees the watchdog's details
    incident = incident_create(
        actor=None,
        source=Source.SYSTEM,
        title="Payments failing",
        severity=1,
        detected_at=timezone.now() - timedelta(hours=1),
    )
    assert client.get("/healthz").status_code == 503  # no sweep has run yet

    env = worker_env(http_sink)
    celery_worker.worker(env)
    beat = celery_worker.beat(
        {**env, "VIGIL_SLA_SWEEP_SECONDS": "1", "VIGIL_ESCALATION_SWEEP_SECONDS": "1"}
    )

    # incidents.sla_sweep, sent by beat and run by the worker, notes the missed response target.
    wait_for(
        lambda: SlaBreach.objects.filter(incident=incident, target=SlaTarget.RESPONSE).exists(),
        timeout=60,
        what="the SLA sweep to note the breach",
    )
    wait_for(lambda: cache.get(SLA_SWEEP_KEY) and cache.get(ESCALATION_SWEEP_KEY), timeout=60)
    healthy = client.get("/healthz")
    assert healthy.status_code == 200, healthy.json()
    assert healthy.json()["checks"]["broker"]["transport"] == "redis"

    beat.stop()
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        stopped = client.get("/healthz")
    assert stopped.status_code == 503
    assert {p.split(":")[0] for p in stopped.json()["problems"]} == {
        "escalation_sweep",
        "sla_sweep",
    }
