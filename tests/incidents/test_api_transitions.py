"""Lifecycle actions through POST /api/v1/incidents/{id}/{action}/: the full matrix, guards,
role permissions, idempotency, and the same audit trail as the admin."""

from __future__ import annotations

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from incidents.models import Incident, Kind, Source
from incidents.services import incident_transition, incident_update
from tests.factories import PATH_TO, IncidentFactory

ACTIONS = ["acknowledge", "investigate", "mitigate", "monitor", "resolve", "reopen", "close"]
# Where each action may start from, and where it leads.
ALLOWED = {
    "acknowledge": ({"open"}, "acknowledged"),
    "investigate": ({"open", "acknowledged", "mitigating", "monitoring"}, "investigating"),
    "mitigate": ({"open", "acknowledged", "investigating", "monitoring"}, "mitigating"),
    "monitor": ({"open", "acknowledged", "investigating", "mitigating"}, "monitoring"),
    "resolve": (
        {"open", "acknowledged", "investigating", "mitigating", "monitoring"},
        "resolved",
    ),
    "reopen": ({"resolved"}, "investigating"),
    "close": ({"resolved"}, "closed"),
    "cancel": (
        {"open", "acknowledged", "investigating", "mitigating", "monitoring"},
        "cancelled",
    ),
}
CORE_KINDS = [Kind.CREATED, Kind.STATUS, Kind.UPDATE, Kind.SEVERITY, Kind.PRIORITY, Kind.ROLE]
BODIES = {"resolve": {"resolution": "Rolled back."}, "cancel": {"reason": "False alarm."}}


@pytest.fixture
def api_as(db):
    def make(user) -> APIClient:
        _, token = AuthToken.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    return make


def _already_done(action: str, status: str) -> bool:
    if action == "acknowledge":
        return status not in ("open", "cancelled")  # acknowledged on the way here
    if action == "reopen":
        return False  # investigating here came from "investigate", not from a reopen
    return status == ALLOWED[action][1]


def _post(client, incident, action, body=None):
    return client.post(f"/api/v1/incidents/{incident.number}/{action}/", body or {}, format="json")


def _closable(status: str) -> Incident:
    incident = IncidentFactory(status=status)
    return incident_update(
        incident=incident,
        actor=None,
        source=Source.SYSTEM,
        root_cause="A bad release.",
        business_impact="Checkout down 20 minutes.",
        resolution=incident.resolution or "Rolled back.",
    )


@pytest.mark.parametrize("status", list(PATH_TO))
@pytest.mark.parametrize("action", [*ACTIONS, "cancel"])
def test_transition_matrix(api_as, incident_manager, status, action):
    incident = _closable(status)
    client = api_as(incident_manager)
    sources, target = ALLOWED[action]
    response = _post(client, incident, action, BODIES.get(action))
    body = response.json()

    if status in sources:
        assert response.status_code == 200, body
        assert body["status"] == target
        entry = incident.timeline.filter(kind=Kind.STATUS, source=Source.API).get()
        assert (entry.data["action"], entry.data["from"], entry.data["to"]) == (
            action,
            status,
            target,
        )
    elif _already_done(action, status):
        # The action already happened: 200, nothing changes.
        assert response.status_code == 200, body
        assert body["status"] == status
        assert not incident.timeline.filter(source=Source.API).exists()
    else:
        assert response.status_code == 409, body
        assert body["code"] == "transition_not_allowed"
        allowed = {a for a, (froms, _) in ALLOWED.items() if status in froms}
        assert set(body["allowed_actions"]) == allowed
        assert status in body["detail"]
        incident.refresh_from_db()
        assert incident.status == status


def test_repeating_an_action_changes_nothing(api_as, incident_manager, incident):
    client = api_as(incident_manager)
    first = _post(client, incident, "acknowledge")
    entries = incident.timeline.count()
    history = incident.history.count()
    second = _post(client, incident, "acknowledge")
    assert first.status_code == second.status_code == 200
    assert second.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    assert (incident.timeline.count(), incident.history.count()) == (entries, history)


@pytest.mark.parametrize(
    ("status", "action", "body", "missing"),
    [
        ("investigating", "resolve", {}, ["resolution"]),
        ("investigating", "resolve", {"resolution": "   "}, ["resolution"]),
        ("resolved", "close", {}, ["root_cause", "business_impact"]),
        ("open", "cancel", {}, ["reason"]),
    ],
)
def test_failed_guard_is_400_naming_the_missing_fields(
    api_as, incident_manager, status, action, body, missing
):
    incident = IncidentFactory(status=status)
    response = _post(api_as(incident_manager), incident, action, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "guard_failed"
    assert set(payload["missing_fields"]) == set(missing)
    assert set(payload["errors"]) == set(missing)
    incident.refresh_from_db()
    assert incident.status == status


def test_resolve_records_the_resolution_given(api_as, incident_manager):
    incident = IncidentFactory(status="monitoring")
    response = _post(api_as(incident_manager), incident, "resolve", {"resolution": "Scaled up."})
    assert response.status_code == 200
    assert response.json()["resolution"] == "Scaled up."
    assert response.json()["report_status"] == "Resolved"


def test_reopen_notes_the_reason(api_as, incident_manager):
    incident = IncidentFactory(status="resolved")
    response = _post(api_as(incident_manager), incident, "reopen", {"reason": "Errors are back."})
    assert response.status_code == 200
    assert response.json()["resolved_at"] is None
    assert "Errors are back." in incident.timeline.filter(kind=Kind.STATUS).last().message


def test_cancel_as_duplicate_links_both_incidents(api_as, incident_manager):
    original, duplicate = IncidentFactory(), IncidentFactory()
    response = _post(
        api_as(incident_manager), duplicate, "cancel", {"duplicate_of": original.number}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["duplicate_of"] == original.number
    assert response.json()["status"] == "cancelled"
    assert original.timeline.filter(data__duplicate=duplicate.number).exists()


@pytest.mark.parametrize("duplicate_of", ["INC-2020-0101-001", "self"])
def test_cancel_with_a_bad_duplicate_is_400(api_as, incident_manager, duplicate_of):
    incident = IncidentFactory()
    target = incident.number if duplicate_of == "self" else duplicate_of
    response = _post(api_as(incident_manager), incident, "cancel", {"duplicate_of": target})
    assert response.status_code == 400
    assert "duplicate_of" in response.json()["errors"]


@pytest.mark.parametrize(
    ("role", "action", "status"),
    [
        ("communications_lead", "resolve", "investigating"),
        ("communications_lead", "investigate", "acknowledged"),
        ("business_liaison", "acknowledge", "open"),
        ("technical_lead", "close", "resolved"),
        ("technical_lead", "cancel", "open"),
    ],
)
def test_roles_that_may_not_act_get_403(api_as, request, role, action, status):
    incident = _closable(status)
    response = _post(api_as(request.getfixturevalue(role)), incident, action, BODIES.get(action))
    assert response.status_code == 403
    assert response.json()["code"] == "action_forbidden"
    incident.refresh_from_db()
    assert incident.status == status


def test_communications_lead_may_acknowledge(api_as, communications_lead, incident):
    assert _post(api_as(communications_lead), incident, "acknowledge").status_code == 200


def test_wrong_types_in_an_action_body_are_400(api_as, incident_manager):
    incident = IncidentFactory(status="investigating")
    client = api_as(incident_manager)
    for body in ([], "resolve", {"resolution": ["a"]}, {"resolution": {"text": "a"}}):
        response = client.post(f"/api/v1/incidents/{incident.number}/resolve/", body, format="json")
        assert response.status_code == 400, body
    incident.refresh_from_db()
    assert incident.status == "investigating"


def _trail(incident: Incident) -> tuple[list, list]:
    # The core's own entries; notifications name outbox rows that differ per incident.
    timeline = [
        (entry.kind, entry.actor_id, entry.message, entry.data)
        for entry in incident.timeline.filter(kind__in=CORE_KINDS).order_by("occurred_at", "id")
    ]
    history = [
        (record.history_change_reason, record.history_user_id, record.status)
        for record in incident.history.order_by("history_id")
    ]
    return timeline, history


def test_api_leaves_the_same_audit_trail_as_the_admin(api_as, incident_manager):
    """The admin's buttons and the API call the same services: same timeline, same history."""
    steps = [
        ("acknowledge", {}),
        ("investigate", {}),
        ("resolve", {"resolution": "Rolled back."}),
        ("reopen", {"reason": "Back again."}),
        ("cancel", {"reason": "Duplicate page."}),
    ]
    by_admin, by_api = IncidentFactory(), IncidentFactory()
    client = api_as(incident_manager)
    for action, params in steps:
        incident_transition(
            incident=by_admin,
            action=action,
            actor=incident_manager,
            source=Source.ADMIN,
            **params,
        )
        assert _post(client, by_api, action, params).status_code == 200

    admin_timeline, admin_history = _trail(by_admin)
    api_timeline, api_history = _trail(by_api)
    assert api_timeline == admin_timeline
    assert api_history == admin_history
    assert len(api_timeline) == 1 + len(steps)
    assert set(by_api.timeline.filter(kind=Kind.STATUS).values_list("source", flat=True)) == {
        Source.API
    }
    assert set(by_admin.timeline.filter(kind=Kind.STATUS).values_list("source", flat=True)) == {
        Source.ADMIN
    }
