"""Timeline notes, role assignments and field history through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from incidents.models import Kind, RoleAssignment, Source, TimelineEntry
from tests.factories import IncidentFactory, ServiceFactory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- timeline ------------------------------------------------------------------------------------


def test_post_a_note_and_a_decision(api_as, business_liaison, incident):
    client = api_as(business_liaison)
    url = f"/api/v1/incidents/{incident.number}/timeline/"
    note = client.post(url, {"body": "  Customers report slow checkout.  "}, format="json")
    decision = client.post(url, {"body": "Roll back.", "kind": "decision"}, format="json")
    assert (note.status_code, decision.status_code) == (201, 201)
    assert note.json()["message"] == "Customers report slow checkout."
    assert note.json()["kind"] == "note"
    assert note.json()["actor"]["username"] == "bl"
    assert note.json()["source"] == "api"
    assert decision.json()["kind"] == "decision"
    entry = TimelineEntry.objects.get(pk=note.json()["id"])
    assert (entry.source, entry.actor) == (Source.API, business_liaison)


@pytest.mark.parametrize(
    "body",
    [{}, {"body": ""}, {"body": "   "}, {"body": "x", "kind": "status"}, {"body": 5}],
)
def test_bad_notes_are_400(api_as, incident_manager, incident, body):
    before = incident.timeline.count()
    response = api_as(incident_manager).post(
        f"/api/v1/incidents/{incident.number}/timeline/", body, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]
    assert incident.timeline.count() == before


def test_timeline_is_oldest_first_and_paginated(api_as, incident_manager):
    with time_machine.travel(T0, tick=False):
        incident = IncidentFactory(status="investigating")
    client = api_as(incident_manager)
    url = f"/api/v1/incidents/{incident.number}/timeline/"
    for minute in range(1, 4):
        with time_machine.travel(T0 + timedelta(minutes=minute), tick=False):
            client.post(url, {"body": f"note {minute}"}, format="json")
    expected = list(incident.timeline.order_by("occurred_at", "id").values_list("id", flat=True))
    seen, next_url = [], f"{url}?page_size=2"
    while next_url:
        page = client.get(next_url).json()
        seen += [entry["id"] for entry in page["results"]]
        next_url = page["next"]
    assert seen == expected
    assert [e["message"] for e in client.get(url).json()["results"][-3:]] == [
        "note 1",
        "note 2",
        "note 3",
    ]


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_timeline_entries_cannot_be_edited_or_deleted(api_as, incident_manager, incident, method):
    response = getattr(api_as(incident_manager), method)(
        f"/api/v1/incidents/{incident.number}/timeline/", {"body": "x"}, format="json"
    )
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


# --- roles ---------------------------------------------------------------------------------------


def test_put_sets_all_roles_and_patch_only_those_named(api_as, incident_manager, make_user):
    make_user("Technical Lead", username="tl")
    make_user("Communications Lead", username="cl")
    incident = IncidentFactory()
    client = api_as(incident_manager)
    url = f"/api/v1/incidents/{incident.number}/roles/"

    response = client.put(url, {"incident_manager": "im", "technical_lead": "tl"}, format="json")
    assert response.status_code == 200, response.json()
    assert {k: v["username"] for k, v in response.json().items()} == {
        "incident_manager": "im",
        "technical_lead": "tl",
    }

    response = client.patch(url, {"communications_lead": "cl"}, format="json")
    assert set(response.json()) == {"incident_manager", "technical_lead", "communications_lead"}

    # PUT replaces: roles not named are unassigned.
    response = client.put(url, {"technical_lead": "cl"}, format="json")
    assert {k: v["username"] for k, v in response.json().items()} == {"technical_lead": "cl"}
    assert client.get(url).json() == response.json()

    messages = list(
        incident.timeline.filter(kind=Kind.ROLE, source=Source.API).values_list(
            "message", flat=True
        )
    )
    assert len(messages) == 6  # 2 + 1 + (3 unassigned or replaced)
    assert RoleAssignment.history.filter(history_user=incident_manager).exists()


def test_assigning_the_same_holder_again_writes_nothing(api_as, incident_manager, incident):
    client = api_as(incident_manager)
    url = f"/api/v1/incidents/{incident.number}/roles/"
    client.patch(url, {"incident_manager": "im"}, format="json")
    before = incident.timeline.count()
    assert client.patch(url, {"incident_manager": "im"}, format="json").status_code == 200
    assert incident.timeline.count() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"janitor": "im"}, "janitor"),
        ({"incident_manager": "ghost"}, "incident_manager"),
        ({"incident_manager": 7}, "incident_manager"),
        (["incident_manager"], "non_field_errors"),
    ],
)
def test_bad_role_assignments_are_400_and_change_nothing(
    api_as, incident_manager, incident, body, field
):
    before = incident.timeline.count()
    response = api_as(incident_manager).put(
        f"/api/v1/incidents/{incident.number}/roles/", body, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert incident.timeline.count() == before


def test_inactive_users_cannot_be_assigned(api_as, incident_manager, make_user, incident):
    make_user("Technical Lead", username="left", is_active=False)
    response = api_as(incident_manager).patch(
        f"/api/v1/incidents/{incident.number}/roles/", {"technical_lead": "left"}, format="json"
    )
    assert response.status_code == 400


def test_assigning_roles_needs_the_permission(api_as, technical_lead, incident):
    response = api_as(technical_lead).patch(
        f"/api/v1/incidents/{incident.number}/roles/", {"technical_lead": "tl"}, format="json"
    )
    assert response.status_code == 403
    assert not incident.role_assignments.exists()


# --- history -------------------------------------------------------------------------------------


def test_history_lists_field_changes_with_who_and_why(api_as, incident_manager):
    ServiceFactory(slug="checkout")
    client = api_as(incident_manager)
    with time_machine.travel(T0, tick=False):
        number = client.post(
            "/api/v1/incidents/", {"title": "Checkout down", "severity": 3}, format="json"
        ).json()["id"]
    url = f"/api/v1/incidents/{number}/"
    # Within the targets: a severity change past one would first record its breach (Vigil's).
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        client.patch(url, {"title": "Checkout 500s", "services": ["checkout"]}, format="json")
        client.patch(url, {"severity": 1}, format="json")
        client.post(f"{url}acknowledge/", {}, format="json")

    records = client.get(f"{url}history/").json()["results"]
    assert records[0]["type"] == "created"
    assert records[0]["user"]["username"] == "im"
    created = {c["field"]: c["new"] for c in records[0]["changes"]}
    assert created["title"] == "Checkout down"
    assert created["severity"] == 3

    changes = [
        (c["field"], c["old"], c["new"]) for record in records[1:] for c in record["changes"]
    ]
    assert ("title", "Checkout down", "Checkout 500s") in changes
    assert ("services", [], ["checkout"]) in changes
    assert ("severity", 3, 1) in changes
    assert ("status", "open", "acknowledged") in changes
    assert {r["user"]["username"] for r in records} == {"im"}
    assert any(r["reason"] == "acknowledge" for r in records)


def test_history_pages_diff_against_the_record_before_the_page(api_as, incident_manager):
    incident = IncidentFactory(status="resolved")  # several records already
    client = api_as(incident_manager)
    url = f"/api/v1/incidents/{incident.number}/history/"
    whole = client.get(url).json()["results"]
    paged, next_url = [], f"{url}?page_size=2"
    while next_url:
        page = client.get(next_url).json()
        paged += page["results"]
        next_url = page["next"]
    assert paged == whole
    assert len(whole) >= 4
