"""Reports from people and checks (§4.1) through the API (``POST /api/v1/reports/``) and the
admin's "Report an incident" form: an incident opened with the right detection source and the
reporter on its timeline, or the report appended to a named incident; refusals write nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse
from rest_framework.test import APIClient

from incidents.events import INCIDENT_CREATED
from incidents.models import (
    DetectionSource,
    Incident,
    IncidentEvent,
    IncomingReport,
    Kind,
    ReportKind,
    Source,
    TimelineEntry,
)
from tests.factories import IncidentFactory, ServiceFactory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPORTS = "/api/v1/reports/"
ADMIN_FORM = "/admin/incidents/incomingreport/add/"


def created_events() -> list[tuple]:
    """(incident id, payload, actor id, source) of every ``incident_created`` event recorded
    (what the escalation app pages on once the transaction commits)."""
    return [
        (e.incident_id, e.payload, e.actor_id, e.source)
        for e in IncidentEvent.objects.filter(name=INCIDENT_CREATED).order_by("id")
    ]


def _notes(incident: Incident, source: str) -> list[TimelineEntry]:
    return list(
        TimelineEntry.objects.filter(incident=incident, kind=Kind.NOTE, source=source).order_by(
            "id"
        )
    )


def _nothing_written(before_incidents: int, before_entries: int) -> None:
    assert Incident.objects.count() == before_incidents
    assert TimelineEntry.objects.count() == before_entries
    assert IncomingReport.objects.count() == 0


# --- API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ReportKind.values)
def test_api_report_opens_an_incident_with_its_detection_source_and_reporter(
    api_as, incident_manager, service, kind
):
    ServiceFactory(slug="search", name="Search")
    with time_machine.travel(T0, tick=False):
        response = api_as(incident_manager).post(
            REPORTS,
            {
                "kind": kind,
                "reporter_name": "Dana Customer",
                "reporter_email": "dana@example.com",
                "description": "Checkout spins forever after I press Pay.\nSince about 08:45.",
                "services": ["checkout", "search"],
            },
            format="json",
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    incident = Incident.objects.get(number=body["incident"]["id"])
    assert incident.detection_source == kind
    assert incident.title == "Checkout spins forever after I press Pay."
    assert incident.summary.startswith("Checkout spins forever")
    assert incident.severity_id == 3
    assert sorted(incident.services.values_list("slug", flat=True)) == ["checkout", "search"]
    assert body["incident"]["detection_source"] == kind
    assert body["report"]["opened_incident"] is True
    assert body["report"]["kind"] == kind
    assert body["report"]["submitted_by"]["username"] == "im"

    report = IncomingReport.objects.get()
    assert (report.incident, report.channel, report.reporter_email) == (
        incident,
        Source.API,
        "dana@example.com",
    )
    (note,) = _notes(incident, Source.API)
    assert note.actor == incident_manager
    assert "from Dana Customer <dana@example.com>" in note.message
    assert "received by the API (opened this incident)" in note.message
    assert "Since about 08:45." in note.message
    # The response team is paged as for any new incident.
    assert created_events() == [(incident.pk, {"paging": "team"}, incident_manager.pk, Source.API)]


def test_api_report_takes_the_given_title_and_severity(api_as, incident_manager):
    response = api_as(incident_manager).post(
        REPORTS,
        {
            "kind": "support_escalation",
            "reporter_name": "Support desk (Ana)",
            "title": "Enterprise customer cannot log in",
            "description": "Acme Corp: all 400 users get 'invalid session'.",
            "severity": 2,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    incident = Incident.objects.get(number=response.json()["incident"]["id"])
    assert (incident.title, incident.severity_id, incident.detection_source) == (
        "Enterprise customer cannot log in",
        2,
        DetectionSource.SUPPORT_ESCALATION,
    )
    assert IncomingReport.objects.get().reporter_email == ""


def test_api_report_appends_to_the_named_incident(api_as, incident_manager, service):
    existing = IncidentFactory(status="investigating", title="Checkout errors")
    before = Incident.objects.count()
    created_before = created_events()
    response = api_as(incident_manager).post(
        REPORTS,
        {
            "kind": "customer_report",
            "reporter_email": "lee@example.org",
            "description": "Still failing for me at 10:02.",
            "severity": 1,
            "services": ["checkout"],
            "incident": existing.number,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["incident"]["id"] == existing.number
    assert body["report"]["opened_incident"] is False
    assert Incident.objects.count() == before
    existing.refresh_from_db()
    assert existing.severity_id == 3  # a reporter's severity is noted, not applied
    (note,) = _notes(existing, Source.API)
    assert "from lee@example.org" in note.message
    assert "(appended to this incident)" in note.message
    assert "Severity given by the reporter: Sev 1" in note.message
    assert "Services named: checkout" in note.message
    assert "Still failing for me at 10:02." in note.message
    assert created_events() == created_before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"reporter_name": "Dana"}, "description"),
        ({"reporter_name": "Dana", "description": "   "}, "description"),
        ({"description": "Broken."}, "reporter_name"),
        ({"reporter_name": "Dana", "description": "x", "kind": "monitoring"}, "kind"),
        (
            {"reporter_name": "Dana", "description": "x", "reporter_email": "no-at"},
            "reporter_email",
        ),
        ({"reporter_name": "Dana", "description": "x", "severity": 7}, "severity"),
        ({"reporter_name": "Dana", "description": "x", "services": ["nope"]}, "services"),
        ({"reporter_name": "Dana", "description": "x", "incident": "INC-1"}, "incident"),
        (
            {"reporter_name": "Dana", "description": "x", "incident": "INC-2026-0101-999"},
            "incident",
        ),
        ({"reporter_name": "Dana", "description": "x" * 10_001}, "description"),
    ],
)
def test_api_report_bad_input_is_a_400_and_writes_nothing(api_as, incident_manager, payload, field):
    client = api_as(incident_manager)
    before = (Incident.objects.count(), TimelineEntry.objects.count())
    response = client.post(REPORTS, payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"], response.json()
    _nothing_written(*before)


def test_api_report_needs_the_permission_to_log_incidents(api_as, communications_lead, viewer):
    incident = IncidentFactory()
    before = (Incident.objects.count(), TimelineEntry.objects.count())
    for user in (communications_lead, viewer):
        for extra in ({}, {"incident": incident.number}):
            response = api_as(user).post(
                REPORTS, {"reporter_name": "Dana", "description": "Broken.", **extra}, format="json"
            )
            assert response.status_code == 403, response.json()
    assert APIClient().post(REPORTS, {}, format="json").status_code == 401
    _nothing_written(*before)


def test_api_report_refuses_non_json(api_as, incident_manager):
    response = api_as(incident_manager).post(
        REPORTS,
        "reporter_name=Dana&description=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 415
    assert not IncomingReport.objects.exists()


# --- admin form --------------------------------------------------------------------------------


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_admin_links_to_the_report_form(client, incident_manager, viewer):
    client.force_login(incident_manager)
    changelist = client.get(reverse("admin:incidents_incident_changelist"))
    assert ADMIN_FORM in changelist.content.decode()
    reports = client.get(reverse("admin:incidents_incomingreport_changelist"))
    assert ADMIN_FORM in reports.content.decode()

    client.force_login(viewer)
    assert (
        ADMIN_FORM
        not in client.get(reverse("admin:incidents_incident_changelist")).content.decode()
    )
    assert client.get(ADMIN_FORM).status_code == 403


def test_admin_form_offers_every_report_kind_including_routine_checks(client, incident_manager):
    client.force_login(incident_manager)
    html = client.get(ADMIN_FORM).content.decode()
    for value, label in ReportKind.choices:
        assert f'value="{value}"' in html
        assert label in html


def test_admin_form_opens_an_incident_from_a_routine_check(client, incident_manager, service):
    client.force_login(incident_manager)
    response = client.post(
        ADMIN_FORM,
        {
            "kind": "routine_check",
            "reporter_name": "Nightly backup check",
            "title": "Backups of the orders database failed",
            "description": "The 02:00 backup job exited with code 2.",
            "services": [service.pk],
            "severity": "2",
        },
    )
    incident = Incident.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:incidents_incident_change", args=[incident.pk])
    assert (incident.detection_source, incident.severity_id, incident.title) == (
        DetectionSource.ROUTINE_CHECK,
        2,
        "Backups of the orders database failed",
    )
    assert list(incident.services.all()) == [service]
    (note,) = _notes(incident, Source.ADMIN)
    assert note.actor == incident_manager
    assert "Routine system check from Nightly backup check, received by the admin" in note.message
    assert IncomingReport.objects.get().channel == Source.ADMIN
    assert _messages(response) == [f"{incident.number} opened from the routine system check."]


def test_admin_form_appends_to_an_incident(client, incident_manager):
    existing = IncidentFactory(status="acknowledged")
    client.force_login(incident_manager)
    response = client.post(
        ADMIN_FORM,
        {
            "kind": "third_party",
            "reporter_name": "Payment provider status mail",
            "description": "Our card authorisation API is degraded in EU-West.",
            "incident": existing.number.lower(),
        },
    )
    assert response.status_code == 302
    assert Incident.objects.count() == 1
    (note,) = _notes(existing, Source.ADMIN)
    assert "Third-party notification from Payment provider status mail" in note.message
    assert _messages(response) == [f"Report added to the timeline of {existing.number}."]


def test_admin_form_errors_write_nothing(client, incident_manager):
    client.force_login(incident_manager)
    response = client.post(
        ADMIN_FORM,
        {"kind": "customer_report", "description": "", "incident": "INC-2026-0101-404"},
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"description", "incident", "reporter_name"}
    assert not Incident.objects.exists()
    assert not IncomingReport.objects.exists()


def test_admin_form_needs_the_permission_to_log_incidents(client, communications_lead):
    client.force_login(communications_lead)
    response = client.post(
        ADMIN_FORM, {"kind": "customer_report", "reporter_name": "Dana", "description": "x"}
    )
    assert response.status_code == 403
    assert not Incident.objects.exists()


def test_admin_lists_reports_read_only(client, incident_manager, api_as):
    api_as(incident_manager).post(
        REPORTS, {"reporter_email": "dana@example.com", "description": "Broken."}, format="json"
    )
    report = IncomingReport.objects.get()
    client.force_login(incident_manager)
    listing = client.get(reverse("admin:incidents_incomingreport_changelist"))
    assert "dana@example.com" in listing.content.decode()
    change = reverse("admin:incidents_incomingreport_change", args=[report.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, {"description": "edited"}).status_code == 403
    report.refresh_from_db()
    assert report.description == "Broken."
