"""Durable incident events: recorded in the causing transaction, followed after commit by the
handlers apps subscribe, once per (event, handler), in event order per incident; a failing
handler is retried, then given up with a timeline entry and an admin alert, and never rolls back
or blocks an incident action."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from incidents.events import (
    EVENT_NAMES,
    INCIDENT_CREATED,
    INCIDENT_TRANSITIONED,
    announce,
    events_requeue,
    events_subscribe,
    events_unsubscribe,
    incident_events_follow,
)
from incidents.events.registry import _handlers
from incidents.models import (
    EventHandling,
    EventStatus,
    HandlingStatus,
    Incident,
    IncidentEvent,
    Kind,
    Source,
)
from incidents.services import incident_acknowledge, incident_create
from tests.events import follow_events

pytestmark = pytest.mark.django_db


class Recorder:
    """A follower for tests: records what it saw, and fails while told to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[tuple[int, str]] = []
        self.failures_left = 0
        self.always_fail = False

    def __call__(self, event: IncidentEvent) -> None:
        if self.always_fail or self.failures_left > 0:
            self.failures_left -= 1
            # Its writes so far must be rolled back with it.
            Incident.objects.filter(pk=event.incident_id).update(title="written by a failure")
            raise RuntimeError(f"{self.name} is broken")
        self.seen.append((event.incident_id, event.name))


@pytest.fixture
def follower():
    """A handler named ``tests.follower`` on created and transitioned, removed afterwards."""
    recorder = Recorder("tests.follower")
    for name in (INCIDENT_CREATED, INCIDENT_TRANSITIONED):
        events_subscribe(handler=recorder.name, event=name, callback=recorder)
    yield recorder
    events_unsubscribe(handler=recorder.name)


def create(**kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    kwargs.setdefault("severity", 3)
    return incident_create(actor=None, source=Source.SYSTEM, **kwargs)


# --- recording ---------------------------------------------------------------------------------


def test_an_action_records_its_event_and_runs_nothing_else(follower, incident_manager):
    incident = create(severity=2)
    incident_acknowledge(incident=incident, actor=incident_manager, source=Source.API)

    created, acked = IncidentEvent.objects.filter(incident=incident).order_by("id")
    assert (created.name, created.source, created.actor_id) == (INCIDENT_CREATED, "system", None)
    assert created.payload == {"paging": "team"}
    assert created.urgent is True  # Sev 2: followed on the urgent queue
    assert (acked.name, acked.source, acked.actor_id) == (
        INCIDENT_TRANSITIONED,
        "api",
        incident_manager.pk,
    )
    assert acked.payload == {
        "action": "acknowledge",
        "from_status": "open",
        "to_status": "acknowledged",
    }
    assert created.pk < acked.pk
    # Nothing followed inside the transaction: no handling, the follower saw nothing.
    assert not EventHandling.objects.exists()
    assert follower.seen == []
    assert {created.status, acked.status} == {EventStatus.PENDING}


def test_a_rolled_back_action_records_no_event(follower):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        create()
        raise Abort
    assert not IncidentEvent.objects.exists()
    assert follow_events().handled == 0


def test_an_event_nobody_follows_is_stored_as_handled():
    incident = create()
    event = announce("incident_sla_breached", incident=incident, target="response", due_at="x")
    assert event.status == EventStatus.DONE and event.handled_at is not None


def test_unknown_event_names_and_handlers_are_refused():
    with pytest.raises(ValueError, match="Unknown incident event"):
        events_subscribe(handler="tests.x", event="incident_exploded", callback=print)
    with pytest.raises(ValueError, match="handler name"):
        events_subscribe(handler="", event=EVENT_NAMES[0], callback=print)


# --- following ---------------------------------------------------------------------------------


def test_each_handler_runs_once_per_event_in_event_order(follower, incident_manager):
    incident = create()
    incident_acknowledge(incident=incident, actor=incident_manager, source=Source.ADMIN)

    follow_events()
    follow_events()
    assert incident_events_follow(incident_id=incident.pk).handled == 0

    assert follower.seen == [(incident.pk, INCIDENT_CREATED), (incident.pk, INCIDENT_TRANSITIONED)]
    handled = EventHandling.objects.filter(handler="tests.follower", event__incident=incident)
    assert handled.count() == 2
    assert set(handled.values_list("status", flat=True)) == {HandlingStatus.DONE}
    assert set(IncidentEvent.objects.values_list("status", flat=True)) == {EventStatus.DONE}
    # Escalation, the other follower, ran on both too.
    assert EventHandling.objects.filter(handler="escalation").count() == 2


def test_a_failing_handler_is_retried_and_a_later_event_waits_for_it(follower, incident_manager):
    follower.failures_left = 1
    with time_machine.travel(timezone.now(), tick=False) as clock:
        incident = create()
        incident_acknowledge(incident=incident, actor=incident_manager, source=Source.ADMIN)

        result = follow_events()
        assert result.retrying == 1
        handling = EventHandling.objects.get(handler="tests.follower", event__name=INCIDENT_CREATED)
        assert handling.status == HandlingStatus.RETRYING
        assert handling.attempts == 1
        assert "tests.follower is broken" in handling.last_error
        # Its writes were rolled back; the incident action stands.
        incident.refresh_from_db()
        assert incident.title == "Checkout is down" and incident.status == "acknowledged"
        # The acknowledgement waits behind the created event for this handler only.
        assert follower.seen == []
        assert EventHandling.objects.filter(handler="escalation").count() == 2

        clock.shift(timedelta(minutes=10))
        follow_events()

    assert follower.seen == [(incident.pk, INCIDENT_CREATED), (incident.pk, INCIDENT_TRANSITIONED)]
    handling.refresh_from_db()
    assert (handling.status, handling.attempts, handling.last_error) == (HandlingStatus.DONE, 2, "")


def test_a_handler_that_keeps_failing_is_given_up_visibly_and_blocks_nothing(
    follower, settings, superuser, client
):
    settings.VIGIL_EVENT_MAX_ATTEMPTS = 3
    follower.always_fail = True
    with time_machine.travel(timezone.now(), tick=False) as clock:
        broken = create(title="Broken one")
        for _ in range(3):
            follow_events()
            clock.shift(timedelta(minutes=10))
        other = create(title="Another incident")
        follower.always_fail = False
        follow_events()

    handling = EventHandling.objects.get(handler="tests.follower", event__incident=broken)
    assert (handling.status, handling.attempts) == (HandlingStatus.FAILED, 3)
    event = handling.event
    assert event.status == EventStatus.FAILED and event.handled_at is not None
    entry = broken.timeline.get(kind=Kind.SYSTEM)
    assert "tests.follower could not follow incident created after 3 attempts" in entry.message
    assert entry.data["event"] == event.pk
    # Other incidents are followed as usual.
    assert (other.pk, INCIDENT_CREATED) in follower.seen

    client.force_login(superuser)
    index = client.get(reverse("admin:index")).content.decode()
    assert "Reactions that failed" in index and broken.number in index

    # The operator's retry runs it again with a fresh budget.
    changelist = reverse("admin:incidents_eventhandling_changelist")
    response = client.post(
        changelist, {"action": "retry", "_selected_action": [handling.pk]}, follow=True
    )
    assert "1 handler(s) will run again." in response.content.decode()
    follow_events()
    handling.refresh_from_db()
    assert handling.status == HandlingStatus.DONE
    assert (broken.pk, INCIDENT_CREATED) in follower.seen
    assert "Reactions that failed" not in client.get(reverse("admin:index")).content.decode()


def test_viewers_cannot_retry_handlers(follower, viewer, client):
    client.force_login(viewer)
    response = client.post(
        reverse("admin:incidents_eventhandling_changelist"),
        {"action": "retry", "_selected_action": [1]},
    )
    assert response.status_code == 403


# --- lost kicks and dead dispatchers -----------------------------------------------------------


def test_the_sweep_requeues_lost_kicks_and_dead_dispatchers_once(
    follower, settings, django_capture_on_commit_callbacks
):
    settings.VIGIL_EVENT_REQUEUE_AFTER_SECONDS = 10
    settings.VIGIL_EVENT_LEASE_SECONDS = 90
    with time_machine.travel(timezone.now(), tick=False) as clock:
        lost = create(title="Its kick was lost")
        dead = create(title="Its dispatcher died")
        # A dispatcher claimed the second one's event and died.
        from incidents.events.recording import EVENT_QUEUE

        assert EVENT_QUEUE.claim(dead.events.get().pk) is not None

        clock.shift(timedelta(seconds=5))
        assert events_requeue() == 0  # too fresh: its kick is still expected

        clock.shift(timedelta(seconds=10))
        with django_capture_on_commit_callbacks() as callbacks:
            assert events_requeue() == 1  # the lost kick; the dead claim is still leased
        assert len(callbacks) == 1
        assert events_requeue() == 0  # taken once
        incident_events_follow(incident_id=lost.pk)  # what the re-queued task does

        clock.shift(timedelta(seconds=90))
        assert events_requeue() == 1  # the lease ran out
        follow_events()

    assert {(lost.pk, INCIDENT_CREATED), (dead.pk, INCIDENT_CREATED)} <= set(follower.seen)
    assert set(IncidentEvent.objects.values_list("status", flat=True)) == {EventStatus.DONE}


def test_following_costs_a_fixed_number_of_queries(follower, django_assert_max_num_queries):
    incident = create(severity=4)
    # Measure the dispatcher, not the work of the apps that follow events: only the test's own
    # follower stays subscribed.
    others = {name: handler for name, handler in _handlers.items() if name != follower.name}
    for name in others:
        events_unsubscribe(handler=name)
    try:
        with django_assert_max_num_queries(20):
            incident_events_follow(incident_id=incident.pk)
    finally:
        _handlers.update(others)
    assert follower.seen == [(incident.pk, INCIDENT_CREATED)]


def test_the_sweep_does_not_queue_again_events_whose_task_is_still_waiting(
    follower, settings, django_capture_on_commit_callbacks, monkeypatch
):
    from incidents import tasks

    settings.VIGIL_EVENT_REQUEUE_AFTER_SECONDS = 10
    settings.VIGIL_PUBLISH_LEASE_SECONDS = 600
    published: list[int] = []
    broker_down = False

    def apply_async(args, **options):
        if broker_down:
            raise ConnectionError("broker down")
        published.append(args[0])

    monkeypatch.setattr(tasks.incident_events_follow_task, "apply_async", apply_async)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=True):
            waiting = create(title="Its task waits in a long queue")
        broker_down = True
        with django_capture_on_commit_callbacks(execute=True):
            lost = create(title="Its kick never reached the broker")
        broker_down = False
        assert published == [waiting.pk]

        clock.shift(timedelta(seconds=30))
        with django_capture_on_commit_callbacks(execute=True):
            assert events_requeue() == 1  # only the one whose publish failed
        assert published == [waiting.pk, lost.pk]
        with django_capture_on_commit_callbacks(execute=True):
            assert events_requeue() == 0  # and once

        # A task lost inside the broker: after the publish lease the sweep queues it again.
        clock.shift(timedelta(seconds=601))
        with django_capture_on_commit_callbacks(execute=True):
            assert events_requeue() == 2
    assert published == [waiting.pk, lost.pk, waiting.pk, lost.pk]
