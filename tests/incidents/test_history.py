"""Audit history (django-simple-history): every change to an incident is a history record with
who made it and why, the affected services included; refused or empty changes leave none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from incidents.errors import GuardFailed, InvalidInput
from incidents.models import Incident, Source
from incidents.services import (
    incident_acknowledge,
    incident_change_severity,
    incident_create,
    incident_resolve,
    incident_update,
)
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def records(incident: Incident) -> list:
    return list(incident.history.order_by("history_id"))


def service_slugs(record) -> list[str]:
    return sorted(row.service.slug for row in record.services.all())


@pytest.fixture
def services(db):
    return [ServiceFactory(slug=slug) for slug in ("checkout", "search", "payments")]


def test_creation_is_recorded_with_its_user(incident_manager):
    with time_machine.travel(T0, tick=False):
        incident = incident_create(
            actor=incident_manager, source=Source.ADMIN, title="API 500s", severity=2
        )
    [record] = records(incident)
    assert (record.history_type, record.history_user, record.history_change_reason) == (
        "+",
        incident_manager,
        "created",
    )
    assert (record.number, record.title, record.severity_id, record.status) == (
        incident.number,
        "API 500s",
        2,
        "open",
    )
    assert record.history_date == T0


def test_creation_with_services_records_them_with_the_same_user(incident_manager, services):
    incident = incident_create(
        actor=incident_manager,
        source=Source.API,
        title="Checkout slow",
        severity=3,
        services=["checkout", "payments"],
    )
    history = records(incident)
    assert all(
        (r.history_user, r.history_change_reason) == (incident_manager, "created") for r in history
    )
    assert service_slugs(history[-1]) == ["checkout", "payments"]


def test_an_edit_is_one_record_with_user_reason_and_the_changes(technical_lead):
    incident = IncidentFactory(root_cause="")
    before = records(incident)
    incident_update(
        incident=incident,
        actor=technical_lead,
        source=Source.API,
        title="Checkout down in EU",
        root_cause="Expired TLS certificate.",
    )
    history = records(incident)
    assert len(history) == len(before) + 1
    record = history[-1]
    assert (record.history_type, record.history_user, record.history_change_reason) == (
        "~",
        technical_lead,
        "updated title, root_cause",
    )
    delta = record.diff_against(history[-2])
    assert sorted(delta.changed_fields) == ["root_cause", "title"]
    assert {(c.field, c.new) for c in delta.changes} == {
        ("title", "Checkout down in EU"),
        ("root_cause", "Expired TLS certificate."),
    }


def test_a_services_change_is_one_record_with_user_reason_and_services(business_liaison, services):
    incident = IncidentFactory(services=["checkout", "search"])
    before = records(incident)
    incident_update(
        incident=incident,
        actor=business_liaison,
        source=Source.ADMIN,
        services=["search", "payments"],  # one removed, one added
    )
    history = records(incident)
    assert len(history) == len(before) + 1
    record = history[-1]
    assert (record.history_user, record.history_change_reason) == (
        business_liaison,
        "updated services",
    )
    assert service_slugs(record) == ["payments", "search"]
    assert service_slugs(history[-2]) == ["checkout", "search"]
    assert record.diff_against(history[-2]).changed_fields == ["services"]


def test_services_and_fields_changed_together_share_one_record(superuser, services):
    incident = IncidentFactory(services=["checkout"])
    before = len(records(incident))
    incident_update(
        incident=incident, actor=superuser, source="api", services=[], summary="Only search now."
    )
    history = records(incident)
    assert len(history) == before + 1
    assert sorted(history[-1].diff_against(history[-2]).changed_fields) == ["services", "summary"]
    assert service_slugs(history[-1]) == []


def test_severity_change_and_priority_recompute_are_recorded(incident_manager):
    # Set by hand (not Sev 3's defaults, which would follow the new severity).
    incident = IncidentFactory(severity=3, impact="medium", urgency="low")
    incident_change_severity(
        incident=incident,
        actor=incident_manager,
        source="admin",
        severity=1,
        priority_reason="Raised first, assessed next.",
    )
    incident_update(
        incident=incident, actor=incident_manager, source="admin", impact="high", urgency="high"
    )
    severity, priority = records(incident)[-2:]
    assert (severity.severity_id, severity.history_user, severity.history_change_reason) == (
        1,
        incident_manager,
        "severity 3 → 1",
    )
    assert (priority.priority, priority.history_change_reason) == (1, "updated impact, urgency")


def test_transitions_are_recorded_with_the_action_as_reason(superuser):
    incident = IncidentFactory()
    incident_acknowledge(incident=incident, actor=superuser, source="api")
    incident_resolve(incident=incident, actor=superuser, source="api", resolution="Fixed.")
    ack, resolve = records(incident)[-2:]
    assert [(r.status, r.history_user, r.history_change_reason) for r in (ack, resolve)] == [
        ("acknowledged", superuser, "acknowledge"),
        ("resolved", superuser, "resolve"),
    ]
    assert ack.acknowledged_at is not None and resolve.resolved_at is not None


def test_actions_by_vigil_itself_have_no_user():
    incident = IncidentFactory()
    incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)
    assert records(incident)[-1].history_user is None


def test_refused_invalid_and_empty_changes_leave_no_record(superuser):
    incident = IncidentFactory(status="investigating", resolution="")
    count = len(records(incident))
    with pytest.raises(GuardFailed):
        incident_resolve(incident=incident, actor=superuser, source="api")
    with pytest.raises(InvalidInput):
        incident_update(
            incident=incident, actor=superuser, source="api", detected_at=T0 + timedelta(days=900)
        )
    with pytest.raises(InvalidInput):
        incident_change_severity(incident=incident, actor=superuser, source="api", severity=7)
    incident_update(incident=incident, actor=superuser, source="api", title=incident.title)
    incident_change_severity(
        incident=incident, actor=superuser, source="api", severity=incident.severity_id
    )
    assert len(records(incident)) == count


def test_history_rebuilds_the_incident_as_it_was(superuser):
    incident = IncidentFactory(title="First title")
    incident_update(incident=incident, actor=superuser, source="api", title="Second title")
    first = records(incident)[0].instance
    assert first.title == "First title"
    assert Incident.objects.get(pk=incident.pk).title == "Second title"
