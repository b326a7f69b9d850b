"""The stakeholder schedule in the staff API: the groups, an incident's schedule (next due, last
sent, late), notes and sends on demand; 400 on bad input, 403 without the role permission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from communications.models import StakeholderGroup, StakeholderNote, StakeholderSend
from communications.services.stakeholders import stakeholder_sweep
from incidents.models import Incident, Source
from incidents.services import incident_create
from tests.events import followed

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def gid(name: str) -> int:
    return StakeholderGroup.objects.get(name=name).pk


def sev1() -> Incident:
    return followed(incident_create)(
        actor=None, source=Source.SYSTEM, title="Checkout is down", severity=1
    )


def base(incident: Incident) -> str:
    return f"/api/v1/incidents/{incident.number}"


def test_the_groups_are_listed(api_as, viewer):
    response = api_as(viewer).get("/api/v1/stakeholder-groups/")
    assert response.status_code == 200
    rows = {r["name"]: r for r in response.json()}
    assert rows["Executive team"]["intervals"] == {"1": 120}
    assert rows["Executive team"]["extra_channels"] == ["sms"]
    assert rows["Partners"]["as_needed"] is True
    assert rows["Customer support"]["members"] == [
        {"contact": None, "user": None, "address": "#support"}
    ]


def test_the_api_needs_authentication(client):
    assert client.get("/api/v1/stakeholder-groups/").status_code in (401, 403)


def test_an_incidents_schedule(api_as, viewer, clock):
    incident = sev1()
    clock.move_to(T0 + 100 * MIN)
    stakeholder_sweep()
    response = api_as(viewer).get(f"{base(incident)}/stakeholder-schedule/")
    assert response.status_code == 200
    rows = {r["group_name"]: r for r in response.json()}
    assert rows["Executive team"]["next_due_at"] == "2026-03-02T12:00:00Z"
    assert rows["Executive team"]["last_sent_at"] is None
    support = rows["Customer support"]
    assert (support["interval_minutes"], support["late"], support["last_kind"]) == (
        30,
        True,
        "scheduled",
    )
    assert support["last_sent_at"] == "2026-03-02T11:40:00Z"
    assert support["next_due_at"] == "2026-03-02T12:10:00Z"
    assert rows["Partners"]["frequency"] == "as needed"
    assert (
        api_as(viewer).get("/api/v1/incidents/INC-2026-0101-999/stakeholder-schedule/").status_code
        == 404
    )


def test_notes_and_sends_on_demand(api_as, communications_lead, clock):
    incident = sev1()
    api = api_as(communications_lead)
    response = api.post(
        f"{base(incident)}/stakeholder-notes/",
        {"group": gid("Partners"), "body": "Order API down; retries fail."},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["author"]["username"] == "cl"

    response = api.post(
        f"{base(incident)}/stakeholder-sends/", {"group": gid("Partners")}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["recipients"], body["late"]) == ("on_demand", 1, False)
    assert "Order API down; retries fail." in body["body"]

    again = api.post(
        f"{base(incident)}/stakeholder-sends/", {"group": gid("Partners")}, format="json"
    )
    assert again.status_code == 400
    assert "Nothing new since Partners's last update" in str(again.json())
    assert StakeholderSend.objects.count() == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"group": 9999, "body": "x"},
        {"group": "x", "body": "x"},
        {"body": "x"},
        {"group": 1, "body": ""},
        {"group": 1, "body": "   "},
        {"group": 1, "body": "x" * 4001},
    ],
)
def test_bad_notes_are_a_400_and_store_nothing(api_as, communications_lead, clock, payload):
    incident = sev1()
    response = api_as(communications_lead).post(
        f"{base(incident)}/stakeholder-notes/", payload, format="json"
    )
    assert response.status_code == 400
    assert not StakeholderNote.objects.exists()


def test_without_the_permission_it_is_a_403(api_as, viewer, technical_lead, clock):
    incident = sev1()
    for user in (viewer, technical_lead):
        api = api_as(user)
        note = api.post(
            f"{base(incident)}/stakeholder-notes/",
            {"group": gid("Partners"), "body": "x"},
            format="json",
        )
        send = api.post(
            f"{base(incident)}/stakeholder-sends/", {"group": gid("Partners")}, format="json"
        )
        assert (note.status_code, send.status_code) == (403, 403)
    assert not StakeholderNote.objects.exists() and not StakeholderSend.objects.exists()
