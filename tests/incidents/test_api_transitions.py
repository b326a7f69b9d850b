"""Lifecycle actions through POST /api/v1/incidents/{id}/{action}/.

The whole status × action matrix, every guard and every role's permissions are
tests/incidents/test_lifecycle.py's, at the services these endpoints call. Here, what the API
adds: every action's endpoint and input reach its transition, each kind of refusal maps to its
HTTP answer once, and the audit trail is the same as the admin's."""

from __future__ import annotations

import pytest

from incidents.models import Incident, Kind, Source
from incidents.services import incident_transition, incident_update
from tests.factories import IncidentFactory

# For each action: a status it is possible from, where it leads, and the body it is posted with.
ACTIONS = {
    "acknowledge": ("open", "acknowledged", {}),
    "investigate": ("acknowledged", "investigating", {}),
    "mitigate": ("investigating", "mitigating", {}),
    "monitor": ("mitigating", "monitoring", {}),
    "resolve": ("monitoring", "resolved", {"resolution": "Scaled up."}),
    "reopen": ("resolved", "investigating", {"reason": "Errors are back."}),
    "close": ("resolved", "closed", {}),
    "cancel": ("open", "cancelled", {"reason": "False alarm."}),
}
CORE_KINDS = [Kind.CREATED, Kind.STATUS, Kind.UPDATE, Kind.SEVERITY, Kind.PRIORITY, Kind.ROLE]


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


@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_action_endpoint_runs_its_transition(api_as, incident_manager, action):
    status, target, body = ACTIONS[action]
    incident = _closable(status)
    response = _post(api_as(incident_manager), incident, action, body)

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == target
    entry = incident.timeline.filter(kind=Kind.STATUS, source=Source.API).get()
    assert (entry.data["action"], entry.data["from"], entry.data["to"]) == (action, status, target)
    if action == "resolve":
        assert response.json()["resolution"] == "Scaled up."
        assert response.json()["report_status"] == "Resolved"
    if action == "reopen":
        assert response.json()["resolved_at"] is None
        assert "Errors are back." in entry.message


def test_an_action_not_possible_from_the_status_is_409_with_the_allowed_actions(
    api_as, incident_manager
):
    incident = _closable("resolved")
    response = _post(api_as(incident_manager), incident, "mitigate")

    assert response.status_code == 409, response.json()
    body = response.json()
    assert body["code"] == "transition_not_allowed"
    assert body["allowed_actions"] == ["reopen", "close"]
    assert "resolved" in body["detail"]
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert not incident.timeline.filter(source=Source.API).exists()


def test_repeating_an_action_is_200_and_changes_nothing(api_as, incident_manager, incident):
    client = api_as(incident_manager)
    first = _post(client, incident, "acknowledge")
    entries = incident.timeline.count()
    history = incident.history.count()
    second = _post(client, incident, "acknowledge")
    assert first.status_code == second.status_code == 200
    assert second.json()["status"] == "acknowledged"
    assert second.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    assert (incident.timeline.count(), incident.history.count()) == (entries, history)


def test_failed_guard_is_400_naming_the_missing_fields(api_as, incident_manager):
    incident = IncidentFactory(status="resolved")
    response = _post(api_as(incident_manager), incident, "close")
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "guard_failed"
    assert set(payload["missing_fields"]) == {"root_cause", "business_impact"}
    assert set(payload["errors"]) == {"root_cause", "business_impact"}
    incident.refresh_from_db()
    assert incident.status == "resolved"


def test_cancel_as_duplicate_links_both_incidents(api_as, incident_manager):
    original, duplicate = IncidentFactory(), IncidentFactory()
    response = _post(
        api_as(incident_manager), duplicate, "cancel", {"duplicate_of": original.number}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["duplicate_of"] == original.number
    assert response.json()["status"] == "cancelled"
    assert original.timeline.filter(data__duplicate=duplicate.number).exists()


def test_cancel_with_a_bad_duplicate_is_400(api_as, incident_manager):
    incident = IncidentFactory()
    response = _post(
        api_as(incident_manager), incident, "cancel", {"duplicate_of": "INC-2020-0101-001"}
    )
    assert response.status_code == 400
    assert "duplicate_of" in response.json()["errors"]


def test_a_role_that_may_not_act_gets_403(api_as, technical_lead):
    incident = _closable("resolved")
    response = _post(api_as(technical_lead), incident, "close")
    assert response.status_code == 403
    assert response.json()["code"] == "action_forbidden"
    incident.refresh_from_db()
    assert incident.status == "resolved"


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
