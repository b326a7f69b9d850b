"""The requeue sweeps never publish a second task for a row whose task is still waiting in a
queue: a row is marked when its task is published, and the sweeps re-publish only rows never
published (the publish failed, or never happened) after a short grace, rows whose publish lease
ran out (the broker lost the message), and rows whose worker died. For notifications, incident
events and webhook deliveries alike, counting the publish calls."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from escalation import tasks as escalation_tasks
from escalation.models import Notification
from escalation.services import notification_enqueue, notifications_requeue
from escalation.services.outbox import OutboxMessage, notification_enqueue_many
from incidents import tasks as incident_tasks
from incidents.detection.intake import KICK_KEY, deliveries_requeue, delivery_accept
from incidents.events import (
    INCIDENT_CREATED,
    events_requeue,
    events_subscribe,
    events_unsubscribe,
    incident_events_follow,
)
from incidents.events.recording import EVENT_QUEUE
from incidents.models import EventStatus, IncidentEvent, Source, WebhookDelivery
from incidents.services import incident_create
from tests.events import pending_event
from tests.incidents.detection_fixtures import make_integration

pytestmark = pytest.mark.django_db

LONG_QUEUE_WAIT = timedelta(minutes=5)  # a storm's backlog: far past every grace period


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


class Broker:
    """Counts the messages published for each task argument; ``refuse`` makes the next
    publishes for those arguments fail, as a broker that is down does."""

    def __init__(self) -> None:
        self.published: list[object] = []
        self.refuse: set[object] = set()

    def __call__(self, args=None, **options):
        key = tuple(args[0]) if args and isinstance(args[0], list) else (args or [None])[0]
        if key in self.refuse:
            self.refuse.discard(key)
            raise ConnectionError("broker down")
        self.published.append(key)

    def count(self, key: object) -> int:
        """How many messages carried ``key``: as their argument, or within a batch's."""
        return sum(
            entry == key or (isinstance(entry, tuple) and key in entry) for entry in self.published
        )


@pytest.fixture
def broker():
    return Broker()


# --- notifications ---------------------------------------------------------------------------


def page(n: int) -> Notification:
    return notification_enqueue(
        incident=None,
        channel="webhook",
        recipient="noc",
        subject="Sev 1: checkout down",
        body="Checkout is down.",
        template="page",
        reason="Initial notification",
        idempotency_key=f"page:{n}",
    )


def test_queued_notifications_are_not_republished_but_a_failed_publish_is_once(
    broker, clock, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS = 60
    settings.VIGIL_PUBLISH_LEASE_SECONDS = 600
    with (
        mock.patch.object(escalation_tasks.notification_send_task, "apply_async", broker),
        mock.patch.object(escalation_tasks.notification_send_batch_task, "apply_async", broker),
    ):
        with django_capture_on_commit_callbacks(execute=True):
            rows = [page(n) for n in range(4)]
            broker.refuse.add(rows[3].pk)  # its publish fails after commit
        assert broker.published == [row.pk for row in rows[:3]]
        assert Notification.objects.filter(published_at__isnull=False).count() == 3

        clock.shift(LONG_QUEUE_WAIT)  # the three tasks still wait in a long queue
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 1
        assert [broker.count(row.pk) for row in rows] == [1, 1, 1, 1]
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 0  # re-published and marked: once
        clock.shift(timedelta(minutes=4))  # 9 minutes queued: within the 10-minute lease
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 0

        # Past the publish lease the messages are presumed lost with the broker.
        clock.shift(timedelta(minutes=1, seconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 3
        assert [broker.count(row.pk) for row in rows] == [2, 2, 2, 1]
        # The three went out again as one batch task.
        assert broker.published[-1] == tuple(row.pk for row in rows[:3])


def test_a_bulk_enqueue_is_one_publish_marked_and_not_republished_while_queued(
    broker, clock, django_assert_num_queries, django_capture_on_commit_callbacks
):
    messages = [
        OutboxMessage(
            channel="webhook",
            recipient="noc",
            subject="Sev 2: search slow",
            body="Search is slow.",
            template="page",
            reason="Initial notification",
            idempotency_key=f"event:7:{n}",
        )
        for n in range(3)
    ]
    with mock.patch.object(escalation_tasks.notification_send_batch_task, "apply_async", broker):
        # One INSERT … RETURNING: no SELECT, no savepoint.
        with (
            django_capture_on_commit_callbacks(execute=False) as callbacks,
            django_assert_num_queries(1),
        ):
            assert notification_enqueue_many(messages, queue="vigil.urgent") == 3
        ids = tuple(Notification.objects.order_by("pk").values_list("pk", flat=True))
        for callback in callbacks:
            callback()
        assert broker.published == [ids]
        assert set(Notification.objects.values_list("urgent", flat=True)) == {True}
        assert not Notification.objects.filter(published_at__isnull=True).exists()

        clock.shift(LONG_QUEUE_WAIT)
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 0


def test_a_failed_bulk_publish_is_republished_by_the_sweep_once(
    broker, clock, django_capture_on_commit_callbacks
):
    messages = [
        OutboxMessage(
            channel="email",
            recipient=f"p{n}@example.org",
            subject="Investigating",
            body="Hello",
            template="status_update_email",
            reason="Status update",
            idempotency_key=f"mailing:3:{n}",
        )
        for n in range(2)
    ]
    with (
        mock.patch.object(escalation_tasks.notification_send_batch_task, "apply_async", broker),
        mock.patch.object(escalation_tasks.notification_send_task, "apply_async", broker),
    ):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            notification_enqueue_many(messages)
        ids = tuple(Notification.objects.order_by("pk").values_list("pk", flat=True))
        broker.refuse.add(ids)
        for callback in callbacks:
            callback()
        assert broker.published == []
        clock.shift(timedelta(seconds=61))
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 2
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 0
        assert broker.published == [ids]  # one batch task again


# --- webhook deliveries ----------------------------------------------------------------------


def test_queued_deliveries_are_not_republished_but_a_failed_publish_is_once(
    broker, clock, service, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_ALERT_REQUEUE_AFTER_SECONDS = 60
    integration = make_integration("generic", service=service, default_severity=4)

    def accept() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return delivery_accept(
                integration_id=integration.pk,
                body="{}",
                headers={},
                remote_addr=None,
                alert_count=1,
            )

    drains = Broker()
    with (
        mock.patch.object(incident_tasks.alert_deliveries_drain_task, "apply_async", drains),
        mock.patch.object(incident_tasks.alert_delivery_process_task, "apply_async", broker),
    ):
        cache.delete(KICK_KEY)
        queued = accept()  # its drains are published: it is marked
        assert len(drains.published) >= 1
        cache.delete(KICK_KEY)
        drains.refuse.add(None)
        lost = accept()  # the broker refuses its drain: unmarked
        assert WebhookDelivery.objects.get(pk=queued).published_at is not None
        assert WebhookDelivery.objects.get(pk=lost).published_at is None

        clock.shift(LONG_QUEUE_WAIT)  # the drains still wait in a long queue
        with django_capture_on_commit_callbacks(execute=True):
            assert deliveries_requeue() == 1
        with django_capture_on_commit_callbacks(execute=True):
            assert deliveries_requeue() == 0
        assert broker.published == [lost]


# --- incident events -------------------------------------------------------------------------


def test_events_whose_kick_is_queued_are_not_requeued_but_unmarked_ones_are_once(
    broker, clock, django_capture_on_commit_callbacks
):
    queued, lost = pending_event(), pending_event()
    # What a kick does once its message is with the broker (a failed kick marks nothing).
    EVENT_QUEUE.mark_published(incident_id=queued.incident_id, status=EventStatus.PENDING)
    with mock.patch.object(incident_tasks.incident_events_follow_task, "apply_async", broker):
        clock.shift(LONG_QUEUE_WAIT)
        with django_capture_on_commit_callbacks(execute=True):
            assert events_requeue() == 1
        assert broker.published == [lost.incident_id]


def test_an_events_kick_marks_the_incidents_events_published(
    broker, clock, django_capture_on_commit_callbacks
):
    with mock.patch.object(incident_tasks.incident_events_follow_task, "apply_async", broker):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            incident = incident_create(actor=None, source=Source.SYSTEM, title="Kicked", severity=4)
        assert broker.count(incident.pk) == 1
        assert not IncidentEvent.objects.filter(
            incident=incident, status=EventStatus.PENDING, published_at__isnull=True
        ).exists()
        clock.shift(LONG_QUEUE_WAIT)
        with django_capture_on_commit_callbacks(execute=True):
            assert events_requeue() == 0
        assert broker.count(incident.pk) == 1


def test_an_event_whose_follower_dies_is_queued_again_after_the_grace_not_the_lease(
    broker, clock, django_capture_on_commit_callbacks
):
    # The event's kick is with the broker (published); its follower takes it up and the worker
    # dies inside a handler: the transaction is rolled back and the message is gone. Taking the
    # event up cleared its publish stamp first, so the sweep queues it again after its short
    # grace instead of waiting out the publish lease.
    def dies(event):
        raise SystemExit("worker killed")  # not an Exception: nothing catches it

    with mock.patch.object(incident_tasks.incident_events_follow_task, "apply_async", broker):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            incident = incident_create(actor=None, source=Source.SYSTEM, title="Dies", severity=4)
        assert broker.count(incident.pk) == 1
        events_subscribe(handler="tests.dies", event=INCIDENT_CREATED, callback=dies)
        try:
            with pytest.raises(SystemExit):
                incident_events_follow(incident_id=incident.pk)
        finally:
            events_unsubscribe(handler="tests.dies")
        event = IncidentEvent.objects.get(incident=incident)
        assert (event.status, event.attempts, event.published_at) == (EventStatus.PENDING, 0, None)
        assert not event.handlings.exists()
        clock.shift(timedelta(seconds=settings.VIGIL_EVENT_REQUEUE_AFTER_SECONDS + 1))
        with django_capture_on_commit_callbacks(execute=True):
            assert events_requeue() == 1
        assert broker.count(incident.pk) == 2
