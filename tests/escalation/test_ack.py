"""The acknowledgement timer (§2.1 response targets) and the one-click acknowledge link."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import signing
from django.urls import reverse

from escalation.models import AckLinkUse, EscalationEvent, IncidentEscalation
from escalation.services import escalation_sweep
from escalation.services.paging import ACK_SALT
from incidents.models import Incident, Kind, Source, Status
from incidents.services import (
    incident_acknowledge,
    incident_change_severity,
    incident_create,
    incident_transition,
)
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import T0, ack_token
from tests.events import follow_events, followed

reachable_policy = escalation_fixtures.reachable_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def create(severity: int = 2, **kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return incident_create(actor=None, source=Source.SYSTEM, severity=severity, **kwargs)


# Escalation follows the incidents' events after each action commits.
create = followed(create)
incident_acknowledge = followed(incident_acknowledge)
incident_change_severity = followed(incident_change_severity)
incident_transition = followed(incident_transition)


def ack_pages(incident: Incident):
    return incident.notifications.filter(idempotency_key__startswith=f"ack-timeout:{incident.pk}:")


# --- the timer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "target", "label"),
    [
        (1, timedelta(minutes=15), "15 min"),
        (2, timedelta(hours=1), "1 h"),
        (3, timedelta(hours=4), "4 h"),
    ],
)
def test_backups_are_paged_at_exactly_the_response_target(
    reachable_policy, clock, severity, target, label
):
    incident = create(severity)

    clock.move_to(T0 + target - timedelta(seconds=1))
    escalation_sweep()
    assert not ack_pages(incident).exists()
    assert not EscalationEvent.objects.filter(incident=incident, step="ack-timeout").exists()

    clock.move_to(T0 + target)
    fired = escalation_sweep()

    assert [f.step for f in fired if f.step == "ack-timeout"] == ["ack-timeout"]
    event = EscalationEvent.objects.get(incident=incident, step="ack-timeout")
    assert event.due_at == T0 + target and event.fired_at == T0 + target
    assert not event.caught_up
    assert event.target == "Backups of Incident Manager and Technical Lead"
    backups = {
        reachable_policy.backup["incident_manager"],
        reachable_policy.backup["technical_lead"],
    }
    assert {n.contact for n in ack_pages(incident)} == backups
    channels = IncidentEscalation.objects.get(incident=incident).policy_snapshot["severities"][
        str(severity)
    ]["channels"]
    assert ack_pages(incident).count() == 2 * len(channels)
    assert set(ack_pages(incident).values_list("channel", flat=True)) == set(channels)
    assert all(n.template.startswith("escalation/ack_timeout/") for n in ack_pages(incident))
    entry = incident.timeline.get(kind=Kind.ESCALATION, data__step="ack-timeout")
    assert entry.message.startswith(
        f"Not acknowledged within the {label} response target (Sev {severity}): "
        "paged the backup contacts – Incident Manager"
    )

    clock.shift(timedelta(minutes=5))
    escalation_sweep()
    assert EscalationEvent.objects.filter(incident=incident, step="ack-timeout").count() == 1
    assert ack_pages(incident).count() == 2 * len(channels)


def test_acknowledging_in_time_stops_the_timer(reachable_policy, clock):
    incident = create(2)
    clock.shift(timedelta(minutes=59))
    incident_acknowledge(
        incident=incident, actor=reachable_policy.primary["incident_manager"].user, source="admin"
    )
    assert IncidentEscalation.objects.get(incident=incident).ack_due_at is None

    clock.shift(timedelta(minutes=2))
    escalation_sweep()
    assert not ack_pages(incident).exists()


def test_taking_action_counts_as_acknowledgement(reachable_policy, clock):
    incident = create(2)
    incident_transition(incident=incident, action="investigate", actor=None, source=Source.SYSTEM)
    clock.shift(timedelta(hours=1))
    escalation_sweep()
    assert not EscalationEvent.objects.filter(incident=incident, step="ack-timeout").exists()


def test_a_raise_brings_the_timer_forward(reachable_policy, clock):
    incident = create(3)  # 4 h response target
    clock.shift(timedelta(minutes=10))
    incident_change_severity(incident=incident, severity=1, actor=None, source=Source.SYSTEM)
    assert IncidentEscalation.objects.get(incident=incident).ack_due_at == T0 + timedelta(
        minutes=15
    )

    clock.move_to(T0 + timedelta(minutes=15))
    escalation_sweep()
    event = EscalationEvent.objects.get(incident=incident, step="ack-timeout")
    assert event.severity == 1
    assert set(ack_pages(incident).values_list("channel", flat=True)) == {"phone", "slack", "email"}


# --- the link: GET confirms, POST acknowledges once --------------------------------------------


def link_for(incident: Incident, contact, channel: str = "email") -> str:
    notification = incident.notifications.get(contact=contact, channel=channel)
    return reverse("escalation:ack", args=[ack_token(notification.body)])


def test_get_shows_a_confirmation_and_changes_nothing(client, reachable_policy, clock):
    incident = create(2)
    manager = reachable_policy.primary["incident_manager"]

    response = client.get(link_for(incident, manager))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Acknowledge {incident.number}?" in page
    assert '<form method="post">' in page
    assert manager.user.get_username() in page
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    incident.refresh_from_db()
    assert incident.status == Status.OPEN and incident.acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_post_acknowledges_as_the_contacts_user_once(client, reachable_policy, clock):
    incident = create(2)
    manager = reachable_policy.primary["incident_manager"]
    url = link_for(incident, manager, "slack")
    clock.shift(timedelta(minutes=7))

    response = client.post(url)
    follow_events()

    assert response.status_code == 200
    assert f"{incident.number} acknowledged" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED
    assert incident.acknowledged_at == T0 + timedelta(minutes=7)
    status_entry = incident.timeline.get(kind=Kind.STATUS)
    assert status_entry.actor == manager.user and status_entry.source == Source.EMAIL
    link_entry = incident.timeline.get(kind=Kind.NOTIFICATION, data__has_key="ack_link")
    assert link_entry.actor == manager.user
    assert "one-click link sent to" in link_entry.message and "by slack" in link_entry.message
    use = AckLinkUse.objects.get()
    assert (use.incident, use.user, use.contact, use.channel, use.outcome) == (
        incident,
        manager.user,
        manager,
        "slack",
        "acknowledged",
    )
    notification = incident.notifications.get(contact=manager, channel="slack")
    assert use.nonce == notification.context["ack_nonce"]
    assert IncidentEscalation.objects.get(incident=incident).ack_due_at is None

    again = client.post(url)
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    assert AckLinkUse.objects.count() == 1
    assert client.get(url).status_code == 410


def test_another_link_after_acknowledgement_reports_it_and_changes_nothing(
    client, reachable_policy, clock
):
    incident = create(2)
    first = link_for(incident, reachable_policy.primary["incident_manager"])
    second = link_for(incident, reachable_policy.primary["technical_lead"])
    client.post(first)
    acknowledged_at = Incident.objects.get(pk=incident.pk).acknowledged_at

    assert "Already acknowledged" in client.get(second).content.decode()
    response = client.post(second)

    assert response.status_code == 200
    assert "was already acknowledged" in response.content.decode()
    assert Incident.objects.get(pk=incident.pk).acknowledged_at == acknowledged_at
    assert incident.timeline.filter(kind=Kind.STATUS).count() == 1
    assert AckLinkUse.objects.get(nonce__isnull=False, outcome="already").user == (
        reachable_policy.primary["technical_lead"].user
    )


def test_an_expired_link_is_refused(client, settings, reachable_policy, clock):
    settings.VIGIL_ACK_LINK_MAX_AGE = 24 * 3600
    incident = create(3)
    url = link_for(incident, reachable_policy.primary["incident_manager"])

    clock.shift(timedelta(hours=24, seconds=1))
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 410
        assert "expired" in response.content.decode()

    incident.refresh_from_db()
    assert incident.acknowledged_at is None and incident.status == Status.OPEN
    assert not AckLinkUse.objects.exists()


def test_a_link_just_inside_its_lifetime_works(client, settings, reachable_policy, clock):
    settings.VIGIL_ACK_LINK_MAX_AGE = 3600
    incident = create(3)
    url = link_for(incident, reachable_policy.primary["incident_manager"])
    clock.shift(timedelta(minutes=59))
    assert client.post(url).status_code == 200


@pytest.mark.parametrize("tamper", ["flip", "truncate", "other_salt", "garbage"])
def test_a_tampered_link_is_refused_with_a_clear_page(client, reachable_policy, clock, tamper):
    incident = create(2)
    token = ack_token(
        incident.notifications.get(
            contact=reachable_policy.primary["incident_manager"], channel="email"
        ).body
    )
    if tamper == "flip":
        payload, rest = token.split(":", 1)
        token = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + ":" + rest
    elif tamper == "truncate":
        token = token[:-5]
    elif tamper == "other_salt":
        # A token for another incident, signed without Vigil's salt for these links.
        token = signing.dumps({"i": incident.pk, "c": None, "u": 1, "n": "x"}, salt="other")
    else:
        token = "not-a-token"

    for response in (client.get(f"/ack/{token}/"), client.post(f"/ack/{token}/")):
        assert response.status_code == 400
        page = response.content.decode()
        assert "This acknowledge link cannot be used" in page
        assert "not valid" in page and "Nothing was changed" in page

    incident.refresh_from_db()
    assert incident.acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_a_forged_payload_signed_with_the_salt_but_not_the_key_is_refused(client, clock, db):
    incident = create(2)
    forged = signing.dumps(
        {"i": incident.pk, "c": None, "u": 1, "n": "n"}, key="not-the-secret", salt=ACK_SALT
    )
    assert client.post(f"/ack/{forged}/").status_code == 400


def test_a_contact_without_a_login_is_told_to_log_in(client, clock):
    # The seeded contacts have no Vigil login.
    incident = create(4)
    notification = incident.notifications.filter(channel="email").first()
    url = f"/ack/{ack_token(notification.body)}/"

    for response in (client.get(url), client.post(url)):
        assert response.status_code == 403
        assert "Log in to Vigil and acknowledge the incident there" in response.content.decode()
    assert Incident.objects.get(pk=incident.pk).acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_a_user_without_the_acknowledge_permission_is_refused(client, reachable_policy, clock):
    # Escalation levels' users are Viewers in these tests; the CTO is escalated to at 2 h.
    incident = create(2)
    clock.shift(timedelta(hours=2))
    escalation_sweep()
    cto = reachable_policy.level["cto"]
    url = link_for(incident, cto)

    response = client.post(url)
    assert response.status_code == 403
    assert "is not allowed to acknowledge incidents" in response.content.decode()
    assert Incident.objects.get(pk=incident.pk).acknowledged_at is None


def test_a_cancelled_incident_has_nothing_to_acknowledge(client, reachable_policy, clock):
    incident = create(2)
    url = link_for(incident, reachable_policy.primary["incident_manager"])
    incident_transition(
        incident=incident, action="cancel", actor=None, source=Source.SYSTEM, reason="False alarm."
    )

    response = client.post(url)
    assert response.status_code == 409
    assert "nothing to acknowledge" in response.content.decode()
    assert not AckLinkUse.objects.exists()


def test_other_methods_are_not_allowed(client, reachable_policy, clock):
    incident = create(2)
    url = link_for(incident, reachable_policy.primary["incident_manager"])
    assert client.put(url).status_code == 405
    assert client.delete(url).status_code == 405


# --- concurrent clicks (PostgreSQL) ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("same_link", [True, False])
def test_links_posted_at_the_same_moment_acknowledge_once(reachable_policy, same_link):
    import threading

    from django.db import connections
    from django.test import Client

    incident = create(2)
    first = link_for(incident, reachable_policy.primary["incident_manager"])
    second = first if same_link else link_for(incident, reachable_policy.primary["technical_lead"])
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def click(url: str) -> None:
        try:
            barrier.wait(10)
            statuses.append(Client().post(url).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=click, args=(url,)) for url in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(statuses) == ([200, 410] if same_link else [200, 200])
    incident.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED
    assert incident.timeline.filter(kind=Kind.STATUS).count() == 1
    outcomes = sorted(AckLinkUse.objects.values_list("outcome", flat=True))
    assert outcomes == (["acknowledged"] if same_link else ["acknowledged", "already"])
    assert incident.timeline.filter(kind=Kind.NOTIFICATION, data__has_key="ack_link").count() == 1


def test_outbox_admin_hides_the_link_so_a_reader_cannot_acknowledge_as_the_recipient(
    client, reachable_policy, clock, viewer
):
    incident = create(2)
    notification = incident.notifications.filter(channel="email").exclude(body="").first()
    assert "/ack/" in notification.body
    token_url = notification.body.split("/ack/", 1)[1].split("/", 1)[0]
    client.force_login(viewer)

    page = client.get(
        reverse("admin:escalation_notification_change", args=[notification.pk])
    ).content.decode()

    assert "[one-click link hidden]" in page
    assert token_url not in page
