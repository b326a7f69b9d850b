"""Acknowledging through a page makes the acknowledger hold the role they were paged for when
nobody holds it: the one-click link carries the paged roles, acknowledging in the admin or the
API after a page finds them in the notifications sent, the claim goes through the incidents
service (timeline entry, history), and a held role, the policy switch off, someone who was not
paged or a link used after another acknowledgement change nothing."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.urls import reverse

from escalation.services import ack_link_read, escalation_sweep
from incidents.models import Incident, IncidentPolicy, Kind, RoleAssignment, Source
from incidents.services import incident_create, incident_role_assign
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import T0
from tests.events import follow_events, followed

reachable_policy = escalation_fixtures.reachable_policy

pytestmark = pytest.mark.django_db

ACK_PATH = "/ack/"


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@followed
def create(severity: int = 2) -> Incident:
    return incident_create(
        actor=None, source=Source.SYSTEM, title="Checkout is down", severity=severity
    )


def link_for(incident: Incident, contact, channel: str = "email") -> str:
    notification = incident.notifications.get(contact=contact, channel=channel)
    return urlsplit(notification.ack_url).fragment


def acknowledge(client, token: str):
    return client.post(ACK_PATH, {"token": token, "confirm": "1"})


def holders(incident: Incident) -> dict[str, str]:
    return {
        a.role.key: a.user.username
        for a in RoleAssignment.objects.filter(incident=incident).select_related("role", "user")
    }


def test_the_link_names_the_role_its_recipient_was_paged_for(reachable_policy, clock):
    incident = create()
    lead = reachable_policy.primary["technical_lead"]

    assert ack_link_read(link_for(incident, lead))["r"] == ["technical_lead"]


def test_acknowledging_by_link_takes_the_empty_paged_role(client, reachable_policy, clock):
    incident = create()
    lead = reachable_policy.primary["technical_lead"]
    clock.shift(timedelta(minutes=4))

    response = acknowledge(client, link_for(incident, lead, "slack"))

    assert response.status_code == 200
    assert "You now hold the <strong>Technical Lead</strong> role" in response.content.decode()
    assert holders(incident) == {"technical_lead": lead.user.username}
    entry = incident.timeline.get(kind=Kind.ROLE)
    assert (entry.actor, entry.source) == (lead.user, Source.EMAIL)
    assert entry.message == (
        f"Technical Lead: {lead.user.get_full_name() or lead.user.username} "
        "(acknowledged the page sent for this role)."
    )
    assignment = RoleAssignment.objects.get(incident=incident)
    assert assignment.history.latest("history_id").history_user == lead.user


def test_a_role_already_held_is_left_to_its_holder(client, reachable_policy, clock, make_user):
    incident = create()
    holder = make_user("Incident Manager", username="grace")
    incident_role_assign(
        incident=incident, role="incident_manager", user=holder, actor=None, source="admin"
    )
    manager = reachable_policy.primary["incident_manager"]

    response = acknowledge(client, link_for(incident, manager))

    assert response.status_code == 200
    incident.refresh_from_db()
    assert incident.acknowledged_at is not None
    assert holders(incident) == {"incident_manager": "grace"}


def test_the_policy_switch_off_takes_no_role(client, reachable_policy, clock):
    IncidentPolicy.objects.filter(pk=1).update(acknowledger_takes_role=False)
    incident = create()

    acknowledge(client, link_for(incident, reachable_policy.primary["incident_manager"]))

    incident.refresh_from_db()
    assert incident.acknowledged_at is not None
    assert holders(incident) == {}


def test_a_backup_paged_at_the_response_target_takes_the_role(client, reachable_policy, clock):
    incident = create(2)
    clock.move_to(T0 + timedelta(hours=1))
    escalation_sweep()
    backup = reachable_policy.backup["incident_manager"]
    token = urlsplit(
        incident.notifications.get(
            contact=backup, channel="email", idempotency_key__startswith="ack-timeout:"
        ).ack_url
    ).fragment

    acknowledge(client, token)

    assert holders(incident) == {"incident_manager": backup.user.username}


def test_a_link_used_after_someone_else_acknowledged_takes_no_role(client, reachable_policy, clock):
    incident = create()
    manager = reachable_policy.primary["incident_manager"]
    lead = reachable_policy.primary["technical_lead"]
    acknowledge(client, link_for(incident, manager))

    response = acknowledge(client, link_for(incident, lead))

    assert "was already acknowledged" in response.content.decode()
    assert holders(incident) == {"incident_manager": manager.user.username}


def test_acknowledging_in_the_admin_after_the_page_takes_the_paged_role(
    client, reachable_policy, clock
):
    incident = create()
    manager = reachable_policy.primary["incident_manager"]
    client.force_login(manager.user)

    response = client.post(
        reverse("admin:incidents_incident_transition", args=[incident.pk, "acknowledge"])
    )
    follow_events()

    assert response.status_code == 302
    assert holders(incident) == {"incident_manager": manager.user.username}
    entry = incident.timeline.get(kind=Kind.ROLE)
    assert (entry.actor, entry.source) == (manager.user, Source.ADMIN)


def test_acknowledging_through_the_api_after_the_page_takes_the_paged_role(
    api_as, reachable_policy, clock
):
    incident = create()
    lead = reachable_policy.primary["technical_lead"]

    response = api_as(lead.user).post(f"/api/v1/incidents/{incident.number}/acknowledge/")
    follow_events()

    assert response.status_code == 200
    assert holders(incident) == {"technical_lead": lead.user.username}


def test_acknowledging_without_having_been_paged_takes_no_role(client, clock, make_user):
    incident = create()
    someone = make_user("Incident Manager", username="walk-in")
    client.force_login(someone)

    client.post(reverse("admin:incidents_incident_transition", args=[incident.pk, "acknowledge"]))
    follow_events()

    incident.refresh_from_db()
    assert incident.acknowledged_at is not None
    assert holders(incident) == {}
