"""The close-guard hook (``incidents.guards``): apps above the core add conditions to closing an
incident without the core importing them. A refusal is a 400 naming what is missing, and
nothing changes."""

from __future__ import annotations

import pytest

from incidents.guards import close_guard_register, close_guard_unregister
from incidents.models import Incident, Kind, Source, Status
from incidents.services import incident_update
from tests.factories import IncidentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def resolved():
    incident = IncidentFactory(status="resolved", severity=1)
    return incident_update(
        incident=incident,
        actor=None,
        source=Source.SYSTEM,
        root_cause="A bad release.",
        business_impact="Checkout down 20 minutes.",
    )


@pytest.fixture
def dummy_guard():
    seen: list[str] = []

    def check(incident: Incident) -> dict[str, str]:
        seen.append(incident.number)
        if incident.severity_id == 1 and "ok" not in incident.summary:
            return {"paperwork": "File the paperwork first."}
        return {}

    close_guard_register(key="tests.paperwork", check=check)
    yield seen
    close_guard_unregister(key="tests.paperwork")


def close(api_as, user, incident):
    return api_as(user).post(f"/api/v1/incidents/{incident.number}/close/", {}, format="json")


def test_a_registered_guard_refuses_the_close_with_400_and_changes_nothing(
    api_as, incident_manager, resolved, dummy_guard
):
    response = close(api_as, incident_manager, resolved)

    assert response.status_code == 400, response.json()
    assert "File the paperwork first." in str(response.json())
    resolved.refresh_from_db()
    assert resolved.status == Status.RESOLVED and resolved.closed_at is None
    assert not resolved.timeline.filter(kind=Kind.STATUS, data__action="close").exists()
    assert dummy_guard == [resolved.number]


def test_the_close_goes_through_once_the_guard_is_satisfied(
    api_as, incident_manager, resolved, dummy_guard
):
    incident_update(incident=resolved, actor=None, source=Source.SYSTEM, summary="All ok now.")

    response = close(api_as, incident_manager, resolved)

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "closed"


def test_without_guards_closing_needs_only_the_core_fields(api_as, incident_manager, resolved):
    response = close(api_as, incident_manager, resolved)

    assert response.status_code == 200, response.json()


def test_the_guard_is_not_consulted_when_the_report_fields_are_missing(
    api_as, incident_manager, dummy_guard
):
    incident = IncidentFactory(status="resolved", severity=1)

    response = close(api_as, incident_manager, incident)

    assert response.status_code == 400
    assert "root_cause" in str(response.json())
    assert dummy_guard == []
