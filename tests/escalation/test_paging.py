"""Initial notification (§4.2 step 1, §5.1): the response team paged on the severity's channels
once the incident's ``incident_created`` event is followed (after the logging transaction
commits); again on a severity rise, not on a drop; and the escalation started with its policy
snapshot by that same handler."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction

from escalation.models import IncidentEscalation, Notification
from incidents.models import (
    Channel,
    Contact,
    EventStatus,
    Incident,
    IncidentEvent,
    Kind,
    ResponseRole,
    SeverityLevel,
    Source,
)
from incidents.services import (
    incident_change_severity,
    incident_create,
    incident_role_assign,
    incident_transition,
)
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import CHANNELS, T0, TEAM, ack_token
from tests.events import follow_events, followed
from tests.factories import UserFactory

reachable_policy = escalation_fixtures.reachable_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def create_unfollowed(severity: int, **kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout & payments down")
    return incident_create(actor=None, source=Source.SYSTEM, severity=severity, **kwargs)


create = followed(create_unfollowed)
incident_change_severity = followed(incident_change_severity)
incident_role_assign = followed(incident_role_assign)
incident_transition = followed(incident_transition)


def rows(incident: Incident) -> set[tuple[str, str]]:
    """(recipient address, channel) of every notification of the incident."""
    return set(incident.notifications.values_list("recipient", "channel"))


def address(contact: Contact, channel: str) -> str:
    return {
        "phone": contact.phone,
        "sms": contact.phone,
        "slack": contact.slack_handle,
        "email": contact.email,
    }[channel]


# --- every severity × channel ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "channel"),
    list(itertools.product([1, 2, 3, 4], [c.value for c in Channel])),
)
def test_each_severity_pages_the_team_on_exactly_its_channels(
    reachable_policy, frozen, severity, channel
):
    incident = create(severity)

    on_channel = incident.notifications.filter(channel=channel)
    if channel in CHANNELS[severity]:
        expected = {address(contact, channel) for contact in reachable_policy.team()}
        assert set(on_channel.values_list("recipient", flat=True)) == expected
        assert on_channel.count() == 3
        for notification in on_channel:
            assert notification.idempotency_key == (
                f"initial:{incident.pk}:sev{severity}:c{notification.contact_id}:{channel}"
            )
            assert notification.template == f"escalation/page/{channel}.txt"
            assert notification.subject.startswith(f"[Sev {severity}] {incident.number}")
            assert notification.reason == f"Sev {severity} incident logged"
    else:
        assert not on_channel.exists()


@pytest.mark.parametrize("severity", [1, 2, 3, 4])
def test_team_page_count_and_timeline(reachable_policy, frozen, severity):
    incident = create(severity)

    assert incident.notifications.count() == 3 * len(CHANNELS[severity])
    assert {n.contact for n in incident.notifications.all()} == set(reachable_policy.team())
    entry = incident.timeline.get(kind=Kind.NOTIFICATION)
    assert entry.message.startswith(f"Sev {severity} incident logged: paged Incident Manager")
    assert "Not reachable" not in entry.message
    assert entry.data["severity"] == severity


def test_messages_carry_incident_details_admin_url_and_ack_link(settings, reachable_policy, frozen):
    settings.VIGIL_BASE_URL = "https://vigil.example.com"
    incident = create(1, summary="Card payments fail.", services=[])
    admin_url = "https://vigil.example.com" + incident.get_absolute_url()

    email = incident.notifications.get(channel="email", contact=reachable_policy.primary[TEAM[0]])
    assert incident.number in email.subject and "Checkout & payments down" in email.subject
    assert "Checkout & payments down" in email.body  # plain text: no HTML escaping
    assert "Sev 1 – Critical" in email.body
    assert admin_url in email.body
    assert ack_token(email.body)
    assert email.context["ack_nonce"]
    assert email.ack_url == f"https://vigil.example.com/ack/#{ack_token(email.body)}"
    slack = incident.notifications.get(channel="slack", contact=reachable_policy.primary[TEAM[0]])
    # Plain text, which the Slack backend escapes; the links are the message's buttons.
    assert "Checkout & payments down" in slack.body
    assert "/ack/" not in slack.body and admin_url not in slack.body
    assert slack.ack_url.startswith("https://vigil.example.com/ack/#")
    phone = incident.notifications.get(channel="phone", contact=reachable_policy.primary[TEAM[0]])
    assert "/ack/" not in phone.body  # spoken: no link
    assert len(phone.body) < 300


def test_sms_is_short_and_carries_the_ack_link(reachable_policy, frozen):
    severity = SeverityLevel.objects.get(level=2)
    severity.notification_channels = ["sms"]
    severity.save()
    incident = create(2, title="A very long title " * 10)

    sms = incident.notifications.filter(channel="sms")
    assert sms.count() == 3
    for row in sms:
        assert len(row.body) <= 320
        assert ack_token(row.body)


def test_each_link_is_its_own(reachable_policy, frozen):
    incident = create(2)
    tokens = [ack_token(n.body) for n in incident.notifications.filter(channel__in=["email"])]
    assert len(set(tokens)) == len(tokens) == 3


# --- addresses missing -------------------------------------------------------------------------


def test_channels_without_an_address_are_skipped_and_recorded(frozen):
    # The seed's contacts: an email address, "[Phone]" as phone and no Slack handle.
    incident = create(1)

    assert set(incident.notifications.values_list("channel", flat=True)) == {"email"}
    assert incident.notifications.count() == 3
    entry = incident.timeline.get(kind=Kind.NOTIFICATION)
    assert "Not reachable:" in entry.message
    assert "Phone call for [Name] – Incident Manager primary contact (no phone number)" in (
        entry.message
    )
    assert "Slack for [Name] – Technical Lead primary contact (no Slack handle)" in entry.message
    assert {(s["channel"], s["why"]) for s in entry.data["skipped"]} == {
        ("phone", "no phone number"),
        ("slack", "no Slack handle"),
    }


def test_a_role_without_any_contact_is_named_on_the_timeline(frozen):
    role = ResponseRole.objects.get(key="communications_lead")
    role.primary_contact = None
    role.save()
    incident = create(4)

    assert incident.notifications.count() == 2
    assert "No one to page for: Communications Lead." in (
        incident.timeline.get(kind=Kind.NOTIFICATION).message
    )


# --- who is paged: assigned users or primary contacts ------------------------------------------


def test_assigned_users_are_paged_through_their_contact_or_their_email(reachable_policy, frozen):
    with_contact = UserFactory(username="ann", email="ann@example.com")
    Contact.objects.create(
        name="Ann",
        email="ann.pager@example.com",
        phone="+14155550999",
        slack_handle="@ann",
        user=with_contact,
    )
    without_contact = UserFactory(username="bob", email="bob@example.com")

    incident = create(
        2, roles={"incident_manager": with_contact, "technical_lead": without_contact}
    )

    # The roles are assigned in the transaction that logs the incident, so by the time its
    # events are followed the team is the assignees (the communications lead, unassigned, is
    # its primary contact); the assignment events find them paged already.
    assert ("ann.pager@example.com", "email") in rows(incident)
    assert ("@ann", "slack") in rows(incident)
    assert ("bob@example.com", "email") in rows(incident)
    assert not incident.notifications.filter(recipient="bob@example.com", channel="slack").exists()
    bob = incident.notifications.get(recipient="bob@example.com")
    assert bob.idempotency_key == f"initial:{incident.pk}:sev2:u{without_contact.pk}:email"
    assert bob.contact is None
    assert incident.notifications.count() == 2 + 1 + 2
    for role in ("incident_manager", "technical_lead"):
        primary = reachable_policy.primary[role]
        assert not incident.notifications.filter(contact=primary).exists()
    entries = list(incident.timeline.filter(kind=Kind.NOTIFICATION))
    assert any(
        "Assigned Technical Lead" in e.message and "Slack for Bob (no Slack handle)" in e.message
        for e in entries
    )


def test_assigning_someone_already_paged_sends_nothing(reachable_policy, frozen):
    incident = create(2)
    before = incident.notifications.count()
    primary_user = reachable_policy.primary["incident_manager"].user

    incident_role_assign(
        incident=incident,
        role="incident_manager",
        user=primary_user,
        actor=None,
        source=Source.SYSTEM,
    )

    assert incident.notifications.count() == before


def test_roles_not_paged_and_closed_incidents_page_nobody(reachable_policy, frozen):
    incident = create(3)
    before = incident.notifications.count()
    incident_role_assign(
        incident=incident,
        role="business_liaison",
        user=UserFactory(username="liaison"),
        actor=None,
        source=Source.SYSTEM,
    )
    assert incident.notifications.count() == before

    incident = incident_transition(
        incident=incident,
        action="resolve",
        actor=None,
        source=Source.SYSTEM,
        resolution="Restarted.",
    )
    incident_role_assign(
        incident=incident,
        role="incident_manager",
        user=UserFactory(username="late"),
        actor=None,
        source=Source.SYSTEM,
    )
    assert incident.notifications.count() == before


# --- severity raise and drop -------------------------------------------------------------------


def test_a_raise_pages_again_on_the_new_channels(reachable_policy, frozen):
    incident = create(3)
    assert incident.notifications.count() == 6
    frozen.shift(timedelta(minutes=10))

    incident_change_severity(incident=incident, severity=1, actor=None, source=Source.SYSTEM)

    raised = incident.notifications.filter(idempotency_key__contains=":sev1:")
    assert raised.count() == 9
    assert set(raised.values_list("channel", flat=True)) == {"phone", "slack", "email"}
    assert set(raised.values_list("reason", flat=True)) == {"Severity raised to Sev 1"}
    assert all("severity raised" in n.subject for n in raised)
    assert incident.timeline.filter(
        kind=Kind.NOTIFICATION, message__startswith="Severity raised to Sev 1: paged"
    ).exists()


def test_a_drop_pages_nobody_and_raising_back_does_not_repeat(reachable_policy, frozen):
    incident = create(1)
    assert incident.notifications.count() == 9

    incident_change_severity(incident=incident, severity=3, actor=None, source=Source.SYSTEM)
    assert incident.notifications.count() == 9

    incident_change_severity(incident=incident, severity=2, actor=None, source=Source.SYSTEM)
    assert incident.notifications.count() == 9 + 6  # Sev 2 reached for the first time

    incident_change_severity(incident=incident, severity=1, actor=None, source=Source.SYSTEM)
    assert incident.notifications.count() == 9 + 6  # the team was paged at Sev 1 already
    assert incident.timeline.filter(kind=Kind.NOTIFICATION).count() == 2


def test_a_raise_changed_again_before_it_is_followed_is_still_paged(reachable_policy, frozen):
    from incidents.services import incident_change_severity as change_severity

    incident = create(3)
    # Both changes commit before the followers run (a busy or restarting worker).
    change_severity(incident=incident, severity=1, actor=None, source=Source.SYSTEM)
    change_severity(incident=incident, severity=2, actor=None, source=Source.SYSTEM)
    follow_events()

    raised = incident.notifications.filter(idempotency_key__contains=":sev1:")
    assert raised.count() == 9
    assert set(raised.values_list("channel", flat=True)) == {"phone", "slack", "email"}
    assert set(raised.values_list("reason", flat=True)) == {"Severity raised to Sev 1"}
    assert incident.notifications.count() == 6 + 9  # the drop to Sev 2 pages nobody


def test_the_raise_is_paged_without_changing_the_incident_the_next_handlers_see(
    reachable_policy, frozen
):
    from incidents.events import (
        INCIDENT_SEVERITY_CHANGED,
        event_incident,
        events_subscribe,
        events_unsubscribe,
    )
    from incidents.services import incident_change_severity as change_severity

    # The handlers of an event share the incident read for it; escalation pages a raise under
    # the raised severity on a copy, so a handler after it sees the incident as it is.
    seen: list[int] = []
    events_subscribe(
        handler="tests.after_escalation",
        event=INCIDENT_SEVERITY_CHANGED,
        callback=lambda event: seen.append(event_incident(event).severity_id),
    )
    try:
        incident = create(3)
        change_severity(incident=incident, severity=1, actor=None, source=Source.SYSTEM)
        change_severity(incident=incident, severity=2, actor=None, source=Source.SYSTEM)
        follow_events()
    finally:
        events_unsubscribe(handler="tests.after_escalation")

    assert incident.notifications.filter(idempotency_key__contains=":sev1:").count() == 9
    assert seen == [2, 2]


# --- the escalation starts with the incident ---------------------------------------------------


def test_escalation_starts_with_a_snapshot_of_the_policy(reachable_policy, frozen):
    incident = create(1)

    esc = IncidentEscalation.objects.get(incident=incident)
    assert esc.ack_due_at == incident.response_due_at == T0 + timedelta(minutes=15)
    assert esc.next_due_at == T0 + timedelta(minutes=30)
    assert esc.severity_from == incident.detected_at
    assert esc.stopped_at is None
    snapshot = esc.policy_snapshot
    assert snapshot["severities"]["1"]["channels"] == CHANNELS[1]
    assert snapshot["severities"]["2"]["response_target_s"] == 3600
    assert [(s["elapsed_s"], s["level"]) for s in snapshot["matrix"]["1"]] == [
        (1800, "it_manager"),
        (3600, "cto"),
        (7200, "ceo"),
        (14400, "board"),
    ]
    assert [(s["elapsed_s"], s["level"]) for s in snapshot["matrix"]["3"]] == [
        (3600, "it_manager"),
        (14400, "cto"),
    ]
    assert "4" not in snapshot["matrix"]
    cto = reachable_policy.level["cto"]
    assert snapshot["levels"]["cto"]["contact"] == {
        "key": f"c{cto.pk}",
        "name": cto.name,
        "contact_id": cto.pk,
        "user_id": cto.user_id,
        "email": cto.email,
        "phone": cto.phone,
        "slack": cto.slack_handle,
    }
    assert snapshot["backups"]["incident_manager"]["contact"]["contact_id"] == (
        reachable_policy.backup["incident_manager"].pk
    )


def test_sev4_has_no_matrix_step(frozen):
    incident = create(4)
    esc = IncidentEscalation.objects.get(incident=incident)
    assert esc.next_due_at is None
    assert esc.ack_due_at == T0 + timedelta(hours=24)


# --- one transaction ---------------------------------------------------------------------------


def test_rollback_of_the_creating_transaction_leaves_no_event_page_or_escalation(
    reachable_policy, frozen
):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        create_unfollowed(1)
        assert IncidentEvent.objects.get().status == EventStatus.PENDING
        assert Notification.objects.count() == 0  # nothing runs in the causing transaction
        raise Abort

    assert follow_events().handled == 0
    assert Incident.objects.count() == 0
    assert IncidentEvent.objects.count() == 0
    assert Notification.objects.count() == 0
    assert IncidentEscalation.objects.count() == 0


@pytest.fixture
def eager(settings):
    """Deliver in this process through the log backend, so a test can follow a page from the
    creating transaction to "sent"."""
    from config.celery import app

    settings.VIGIL_CHANNEL_BACKENDS = {
        c.value: "escalation.channels.log.LogBackend" for c in Channel
    }
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def test_pages_are_delivered_only_after_commit(
    reachable_policy, frozen, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        incident = create_unfollowed(2)
        assert not incident.notifications.exists()

    # The first callback is the kick of the incident's events; the rest were queued by what it
    # ran (the delivery of each outbox row, after the follow task's commit).
    assert callbacks[0].__qualname__.startswith("announce")
    # After commit: the kick ran the follow task, which wrote the outbox rows and, after its own
    # commit, delivered them.
    assert incident.events.get().status == EventStatus.DONE

    assert set(incident.notifications.values_list("status", flat=True)) == {"sent"}
    assert all(n.attempts == 1 for n in incident.notifications.all())
