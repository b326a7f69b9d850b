"""Fan-out of a published status update and of maintenance notices: who gets what (component
selection, maintenance opt-out, pending and unsubscribed subscribers, the suppression list,
webhook subscribers), once each however often the fan-out runs, and bad data never stopping it.
Published through the services; delivered through the outbox to Django's locmem mailbox and a
local HTTP sink."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from communications.models import (
    Fanout,
    FanoutState,
    Message,
    SubscriberState,
    Suppression,
    SuppressionReason,
)
from communications.services import fanout as fanout_service
from communications.services.maintenance import (
    maintenance_cancel,
    maintenance_complete,
    maintenance_schedule,
    maintenance_start,
    maintenance_verify,
)
from communications.tasks import fanout_run_task, fanout_sweep_task
from escalation.models import Notification
from incidents.models import Source
from tests import workers
from tests.communications.fanout_fixtures import (
    components,
    delivered,
    eager,
    page,
    publish_update,
    subscribe,
)
from tests.factories import IncidentFactory

http_sink = workers.http_sink
no_external_network = workers.no_external_network
__all__ = ["components", "eager", "page"]

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("eager", "no_external_network"),
]


@pytest.fixture
def incident(components):
    return IncidentFactory(
        title="Internal: PSP cert expired",
        severity=3,
        customer_facing=True,
        status="investigating",
        services=[components["checkout"].service],
    )


def test_an_update_reaches_the_subscribers_of_its_components_once_each(
    django_capture_on_commit_callbacks, components, incident, communications_lead
):
    checkout, login = components["checkout"], components["login"]
    subscribe("all@example.org")
    subscribe("Checkout.Fan@Example.org", components=[checkout])
    subscribe("both@example.org", components=[checkout, login])
    subscribe("login-only@example.org", components=[login])
    subscribe("pending@example.org", state=SubscriberState.PENDING)
    subscribe("gone@example.org", state=SubscriberState.UNSUBSCRIBED)
    subscribe("bounced@example.org")
    Suppression.objects.create(email="BOUNCED@example.org", reason=SuppressionReason.HARD_BOUNCE)

    update = publish_update(
        django_capture_on_commit_callbacks,
        incident=incident,
        author=communications_lead,
        components={"checkout": "major_outage"},
    )

    assert sorted(delivered()) == [
        "all@example.org",
        "both@example.org",
        "checkout.fan@example.org",
    ]
    messages = Message.objects.filter(status_update=update)
    assert sorted(messages.values_list("recipient", flat=True)) == [
        "all@example.org",
        "both@example.org",
        "checkout.fan@example.org",
    ]
    assert {m.incident_id for m in messages} == {incident.pk}
    fanout = Fanout.objects.get(status_update=update)
    assert (fanout.state, fanout.recipients, fanout.attempts) == (FanoutState.DONE, 3, 1)
    subject = mail.outbox[0].subject
    assert subject == (
        f"[Example Co Status] Investigating: Payments failing at checkout ({incident.number})"
    )
    assert "PSP" not in subject  # the internal title stays internal


def test_later_updates_reach_the_subscribers_of_components_named_earlier(
    django_capture_on_commit_callbacks, components, incident, communications_lead
):
    """The "resolved" update names no component; a checkout subscriber still hears the end of
    the incident they were told about."""
    subscribe("checkout@example.org", components=[components["checkout"]])
    subscribe("login@example.org", components=[components["login"]])
    incident.services.clear()
    publish_update(
        django_capture_on_commit_callbacks,
        incident=incident,
        author=communications_lead,
        components={"checkout": "major_outage"},
    )
    mail.outbox.clear()
    publish_update(
        django_capture_on_commit_callbacks,
        incident=incident,
        author=communications_lead,
        status="resolved",
        title="Payments work again",
        body="Fixed.",
    )
    assert sorted(delivered()) == ["checkout@example.org"]


def test_running_the_fanout_again_sends_nothing_twice(
    django_capture_on_commit_callbacks, components, incident, communications_lead
):
    for n in range(5):
        subscribe(f"s{n}@example.org")
    update = publish_update(
        django_capture_on_commit_callbacks, incident=incident, author=communications_lead
    )
    fanout = Fanout.objects.get(status_update=update)
    assert len(mail.outbox) == 5

    # A duplicate task, the sweep, and a rerun from scratch (as after a worker died).
    with django_capture_on_commit_callbacks(execute=True):
        fanout_run_task.delay(fanout.pk)
    Fanout.objects.filter(pk=fanout.pk).update(
        state=FanoutState.PENDING, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert fanout_sweep_task.delay().get() == 1

    assert len(mail.outbox) == 5
    assert Message.objects.filter(fanout=fanout).count() == 5
    assert Notification.objects.filter(template="status_update_email").count() == 5
    fanout.refresh_from_db()
    assert (fanout.state, fanout.recipients) == (FanoutState.DONE, 5)


def test_a_run_that_fails_midway_is_retried_and_completes_once_each(
    django_capture_on_commit_callbacks,
    components,
    incident,
    communications_lead,
    settings,
    monkeypatch,
):
    settings.VIGIL_FANOUT_BATCH = 2
    for n in range(5):
        subscribe(f"s{n}@example.org")
    real = fanout_service.notification_enqueue_many
    calls = {"n": 0}

    def failing_on_the_second_batch(messages):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("database went away")
        return real(messages)

    monkeypatch.setattr(fanout_service, "notification_enqueue_many", failing_on_the_second_batch)
    update = publish_update(
        django_capture_on_commit_callbacks, incident=incident, author=communications_lead
    )
    fanout = Fanout.objects.get(status_update=update)
    assert (fanout.state, fanout.attempts, fanout.recipients) == (FanoutState.PENDING, 1, 2)
    assert "database went away" in fanout.last_error
    assert len(mail.outbox) == 2

    later = fanout.next_attempt_at + timedelta(seconds=1)
    with time_machine.travel(later), django_capture_on_commit_callbacks(execute=True):
        fanout_sweep_task.delay()

    fanout.refresh_from_db()
    assert (fanout.state, fanout.attempts, fanout.recipients) == (FanoutState.DONE, 2, 5)
    assert sorted(delivered()) == [f"s{n}@example.org" for n in range(5)]


def test_a_bad_address_costs_only_its_own_message(
    django_capture_on_commit_callbacks, components, incident, communications_lead
):
    subscribe("first@example.org")
    subscribe("not an address")  # written around the subscribe page's validation
    subscribe("last@example.org")
    update = publish_update(
        django_capture_on_commit_callbacks, incident=incident, author=communications_lead
    )
    assert sorted(delivered()) == ["first@example.org", "last@example.org"]
    fanout = Fanout.objects.get(status_update=update)
    assert fanout.state == FanoutState.DONE
    assert "1 recipient(s) skipped" in fanout.last_error


def test_an_unpublished_update_sends_nothing(
    django_capture_on_commit_callbacks, components, incident, communications_lead
):
    """The fan-out is written by the publication's transaction: rolled back, nothing goes."""
    from communications.services.updates import status_update_create

    subscribe("all@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        status_update_create(
            incident=incident,
            actor=communications_lead,
            source=Source.ADMIN,
            public_title="Draft",
            public_status="investigating",
            body="Not yet.",
        )
    assert mail.outbox == []
    assert not Fanout.objects.exists()


def test_webhook_subscribers_get_a_statuspage_shaped_document(
    django_capture_on_commit_callbacks,
    components,
    incident,
    communications_lead,
    settings,
    http_sink,
):
    settings.VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE = True
    hook = f"{http_sink.url}/statushook"
    subscribe(hook, webhook=True)
    subscribe(f"{http_sink.url}/login-only", webhook=True, components=[components["login"]])
    update = publish_update(
        django_capture_on_commit_callbacks,
        incident=incident,
        author=communications_lead,
        components={"checkout": "major_outage"},
    )
    [request] = http_sink.requests()
    assert request.path == "/statushook"
    document = request.json()
    assert document["incident"]["id"] == incident.number
    assert document["incident"]["name"] == "Payments failing at checkout"
    assert document["incident"]["status"] == "investigating"
    assert document["incident"]["shortlink"] == (
        f"https://status.example.com/incidents/{incident.number}.html"
    )
    [first] = document["incident"]["incident_updates"]
    assert first["id"] == str(update.pk)
    assert first["affected_components"] == [
        {
            "code": "checkout",
            "name": "Checkout",
            "old_status": "operational",
            "new_status": "major_outage",
        }
    ]
    assert document["meta"]["unsubscribe"].startswith(
        "https://vigil.example.com/status/subscriptions/unsubscribe/"
    )
    assert document["page"]["name"] == "Example Co Status"
    message = Message.objects.get(status_update=update)
    assert (message.channel, message.recipient) == ("subscriber", hook)
    assert json.loads(Notification.objects.get(idempotency_key=message.idempotency_key).body)


# --- maintenance -------------------------------------------------------------------------------


def test_maintenance_notices_go_to_subscribers_who_want_them_at_each_announced_step(
    django_capture_on_commit_callbacks, components, communications_lead
):
    checkout, login = components["checkout"], components["login"]
    subscribe("all@example.org")
    subscribe("no-maintenance@example.org", maintenance=False)
    subscribe("login@example.org", components=[login])
    subscribe("checkout@example.org", components=[checkout])
    start = timezone.now() + timedelta(days=1)

    with django_capture_on_commit_callbacks(execute=True):
        window = maintenance_schedule(
            actor=communications_lead,
            source=Source.ADMIN,
            title="Login database upgrade",
            body="Sign-in **may be slow**.",
            scheduled_for=start,
            scheduled_until=start + timedelta(hours=2),
            components=[login],
        )
    scheduled = delivered()
    assert sorted(scheduled) == ["all@example.org", "login@example.org"]
    assert scheduled["all@example.org"].subject == (
        "[Example Co Status] Maintenance scheduled: Login database upgrade"
    )
    assert "Sign-in may be slow." in scheduled["all@example.org"].body

    for step in (maintenance_start, maintenance_verify, maintenance_complete):
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            step(maintenance=window, actor=communications_lead, source=Source.ADMIN)
        if step is maintenance_verify:
            assert mail.outbox == []  # an internal step: nobody is told
        else:
            assert sorted(delivered()) == ["all@example.org", "login@example.org"]
    assert [m.subject.split(":")[0] for m in mail.outbox] == [
        "[Example Co Status] Maintenance completed"
    ] * 2
    assert Fanout.objects.filter(maintenance=window).count() == 3


def test_a_cancelled_maintenance_is_announced_to_those_told_of_it(
    django_capture_on_commit_callbacks, components, communications_lead
):
    subscribe("all@example.org")
    start = timezone.now() + timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        window = maintenance_schedule(
            actor=communications_lead,
            source=Source.ADMIN,
            title="Checkout upgrade",
            scheduled_for=start,
            scheduled_until=start + timedelta(hours=1),
            components=[components["checkout"]],
        )
    with django_capture_on_commit_callbacks(execute=True):
        maintenance_cancel(maintenance=window, actor=communications_lead, source=Source.ADMIN)
    assert [m.subject for m in mail.outbox] == [
        "[Example Co Status] Maintenance scheduled: Checkout upgrade",
        "[Example Co Status] Maintenance cancelled: Checkout upgrade",
    ]
