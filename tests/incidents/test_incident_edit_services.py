"""One service per edit: "details + severity" (incident_edit) and several role assignments
(incident_roles_assign / incident_roles_replace), called by the admin and the API alike; and
the timeline's one bulk path (timeline_record_many)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.models import Incident, Kind, RoleAssignment, Source, TimelineEntry
from incidents.services import (
    incident_edit,
    incident_role_assign,
    incident_roles_assign,
    incident_roles_replace,
)
from incidents.services.common import timeline_record_many
from tests.incidents.test_admin import change_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def twins(make_incident):
    """Two incidents alike in everything the timeline and history say about an edit."""
    detected = timezone.now() - timedelta(minutes=20)
    return [
        make_incident(
            title="Checkout slow", severity=3, detected_at=detected, status="acknowledged"
        )
        for _ in range(2)
    ]


def written(incident: Incident, source: str) -> list[tuple]:
    entries = TimelineEntry.objects.filter(incident=incident, source=source).order_by("id")
    return [(e.kind, e.actor_id, e.message, e.data) for e in entries]


def history(incident: Incident) -> list[tuple]:
    records = Incident.history.filter(id=incident.pk)
    return [
        (r.history_user_id, r.history_change_reason, r.title, r.severity_id)
        for r in records.order_by("history_id")
        if r.history_user_id is not None
    ]


def test_details_and_severity_from_the_admin_and_the_api_leave_the_same_record(
    client, api_as, incident_manager, twins
):
    in_admin, in_api = twins
    client.force_login(incident_manager)

    page = client.post(
        reverse("admin:incidents_incident_change", args=[in_admin.pk]),
        change_form_data(
            client,
            in_admin,
            title="Checkout down",
            impact="high",
            severity="1",
            severity_change_reason="All EU customers.",
        ),
    )
    api = api_as(incident_manager).patch(
        f"/api/v1/incidents/{in_api.number}/",
        {
            "title": "Checkout down",
            "impact": "high",
            "severity": 1,
            "severity_reason": "All EU customers.",
        },
        format="json",
    )

    assert (page.status_code, api.status_code) == (302, 200)
    from_admin, from_api = written(in_admin, Source.ADMIN), written(in_api, Source.API)
    assert [kind for kind, *_ in from_admin] == [Kind.UPDATE, Kind.PRIORITY, Kind.SEVERITY]
    assert from_admin == from_api
    assert history(in_admin) == history(in_api)
    assert [reason for _, reason, *_ in history(in_admin)] == [
        "updated title, impact",
        "severity 3 → 1",
    ]


def test_an_edit_is_all_or_nothing(incident_manager, make_incident):
    incident = make_incident(severity=3)

    with pytest.raises(InvalidInput):
        incident_edit(
            incident=incident,
            actor=incident_manager,
            source=Source.ADMIN,
            changes={"title": "Renamed", "severity": 9},
        )

    incident.refresh_from_db()
    assert incident.title != "Renamed" and incident.severity_id == 3
    assert not TimelineEntry.objects.filter(incident=incident, kind=Kind.UPDATE).exists()


def test_an_edit_without_the_severity_permission_changes_no_detail(
    communications_lead, make_incident
):
    from incidents.errors import ActionForbidden

    incident = make_incident(severity=3)
    title = incident.title

    with pytest.raises(ActionForbidden):
        incident_edit(
            incident=incident,
            actor=communications_lead,
            source=Source.API,
            changes={"title": "Renamed", "severity": 2},
        )

    incident.refresh_from_db()
    assert (incident.title, incident.severity_id) == (title, 3)


def test_a_role_from_the_admin_and_the_api_leaves_the_same_record(
    client, api_as, incident_manager, technical_lead, twins
):
    in_admin, in_api = twins
    client.force_login(incident_manager)

    page = client.post(
        reverse("admin:incidents_incident_role", args=[in_admin.pk]),
        {"role": "technical_lead", "user": technical_lead.pk},
    )
    api = api_as(incident_manager).patch(
        f"/api/v1/incidents/{in_api.number}/roles/", {"technical_lead": "tl"}, format="json"
    )

    assert (page.status_code, api.status_code) == (302, 200)
    assert written(in_admin, Source.ADMIN) == written(in_api, Source.API)
    records = [
        (r.history_type, r.history_user, r.history_change_reason)
        for r in RoleAssignment.history.filter(incident__in=twins).order_by("history_id")
    ]
    assert records == [("+", incident_manager, "assigned")] * 2


def test_replacing_roles_unassigns_the_others_in_one_change(
    incident_manager, technical_lead, communications_lead, make_incident
):
    incident = make_incident()
    for role, user in (("technical_lead", technical_lead), ("communications_lead", technical_lead)):
        incident_role_assign(
            incident=incident, role=role, user=user, actor=None, source=Source.SYSTEM
        )

    incident_roles_replace(
        incident=incident,
        actor=incident_manager,
        source=Source.API,
        assignments={"communications_lead": communications_lead},
    )

    held = dict(incident.role_assignments.values_list("role__key", "user__username"))
    assert held == {"communications_lead": "cl"}
    messages = [m for _, _, m, _ in written(incident, Source.API)]
    tl, cl = technical_lead.get_full_name(), communications_lead.get_full_name()
    assert messages == [
        f"Technical Lead: {tl} unassigned.",
        f"Communications Lead: {cl} assigned (replacing {tl}).",
    ]


def test_assigning_several_roles_is_all_or_nothing(
    incident_manager, technical_lead, make_user, make_incident
):
    incident = make_incident()
    inactive = make_user(username="gone", is_active=False)

    with pytest.raises(InvalidInput):
        incident_roles_assign(
            incident=incident,
            actor=incident_manager,
            source=Source.API,
            assignments={"technical_lead": technical_lead, "communications_lead": inactive},
        )

    assert not incident.role_assignments.exists()
    assert not TimelineEntry.objects.filter(incident=incident, kind=Kind.ROLE).exists()


# --- the timeline's bulk path ----------------------------------------------------------------


def test_timeline_record_many_appends_in_one_insert(make_incident):
    first, second = make_incident(), make_incident()
    at = timezone.now() - timedelta(minutes=1)

    with CaptureQueriesContext(connection) as queries:
        entries = timeline_record_many(
            entries=[
                {
                    "incident": first,
                    "kind": Kind.ALERT,
                    "source": Source.WEBHOOK,
                    "actor": None,
                    "message": "Alert fired.",
                    "data": {"alert": 1},
                    "occurred_at": at,
                },
                {
                    "incident_id": second.pk,
                    "kind": Kind.ALERT,
                    "source": Source.WEBHOOK,
                    "actor": None,
                    "message": "Alert resolved.",
                },
            ]
        )

    assert len(queries) == 1
    assert [(e.incident_id, e.message, e.data) for e in entries] == [
        (first.pk, "Alert fired.", {"alert": 1}),
        (second.pk, "Alert resolved.", {}),
    ]
    assert TimelineEntry.objects.get(incident=first, kind=Kind.ALERT).occurred_at == at
    with CaptureQueriesContext(connection) as none:
        assert timeline_record_many(entries=[]) == []
    assert len(none) == 0


def test_a_timeline_entry_names_exactly_one_incident(make_incident):
    incident = make_incident()
    entry = {"kind": Kind.NOTE, "source": Source.SYSTEM, "actor": None, "message": "x"}

    with pytest.raises(TypeError):
        timeline_record_many(entries=[entry])
    with pytest.raises(TypeError):
        timeline_record_many(entries=[{**entry, "incident": incident, "incident_id": incident.pk}])
