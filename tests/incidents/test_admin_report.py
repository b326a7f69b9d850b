"""The §6.2 incident report (page and Markdown download) and the admin index dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents.models import Source
from incidents.services import incident_note_add
from incidents.timeformat import when

pytestmark = pytest.mark.django_db

SECTIONS = [
    "SUMMARY",
    "TIMELINE",
    "ROOT CAUSE",
    "RESOLUTION",
    "BUSINESS IMPACT",
    "LESSONS LEARNED",
    "FOLLOW-UP ACTIONS",
]


def report_url(incident, **query) -> str:
    url = reverse("admin:incidents_incident_report", args=[incident.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


@pytest.fixture
def closed(make_incident, incident_manager):
    incident = make_incident(
        status="closed",
        severity=1,
        title="Checkout down",
        summary="Checkout failed for all customers.",
        root_cause="A connection pool limit lowered by release 42.",
        resolution="Rolled back release 42.",
        business_impact="About 1,800 orders delayed for 40 minutes.",
        affected_users=1800,
        # Assigned as it is logged: a closed incident's roles no longer change.
        roles={"incident_manager": incident_manager},
    )
    return incident


def test_report_page_renders_the_procedure_template(client, viewer, closed):
    client.force_login(viewer)

    response = client.get(report_url(closed))

    assert response.status_code == 200
    html = response.content.decode()
    for heading in ["Incident ID", "Date/Time", "Severity", "Status", *SECTIONS]:
        assert heading in html
    assert closed.number in html
    assert "A connection pool limit lowered by release 42." in html
    assert "Incident Manager: Im" in html
    assert report_url(closed, format="md") in html
    assert response.context["report_status"] == "Closed"


def test_markdown_download(client, viewer, closed):
    closed.refresh_from_db()
    client.force_login(viewer)

    response = client.get(report_url(closed, format="md"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{closed.number}.md"'
    text = response.content.decode()
    assert text.startswith(f"# Incident report {closed.number}: Checkout down\n")
    assert f"- **Incident ID:** {closed.number}" in text
    start, end = when(closed.detected_at), when(closed.resolved_at)
    assert f"- **Date/Time:** {start} – {end}" in text
    assert start.endswith(" UTC")
    assert "- **Severity:** Sev 1 (Critical)" in text
    assert "- **Status:** Closed" in text
    for heading in SECTIONS:
        assert f"## {heading}\n" in text
    assert "Rolled back release 42." in text
    assert "Estimated affected users: 1800" in text
    assert "Status: Resolved → Closed." in text  # the timeline, chronologically
    assert text.index("Incident logged") < text.index("Status: Resolved → Closed.")
    follow_ups = text.split("## FOLLOW-UP ACTIONS\n")[1]
    assert follow_ups.lstrip().startswith("None recorded.")
    assert "\n\n\n" not in text


def test_report_of_an_ongoing_incident_says_so_and_invents_nothing(client, viewer, make_incident):
    incident = make_incident(status="investigating", summary="")
    client.force_login(viewer)

    text = client.get(report_url(incident, format="md")).content.decode()

    assert "UTC – ongoing" in text
    assert "- **Status:** In Progress" in text
    assert "## SUMMARY\n\nNot recorded." in text
    assert "## ROOT CAUSE\n\nNot recorded." in text
    assert "## LESSONS LEARNED\n\nNone recorded." in text


def test_multi_line_timeline_entries_stay_inside_their_list_item(
    client, technical_lead, make_incident
):
    incident = make_incident()
    incident_note_add(
        incident=incident,
        actor=technical_lead,
        source=Source.ADMIN,
        body="Two findings:\nthe pool is exhausted\nand retries pile up",
    )
    client.force_login(technical_lead)

    text = client.get(report_url(incident, format="md")).content.decode()

    assert "Two findings:\n  the pool is exhausted\n  and retries pile up" in text


def test_report_of_a_cancelled_duplicate_names_the_original(
    client, incident_manager, make_incident
):
    original = make_incident()
    duplicate = make_incident()
    from incidents.services import incident_cancel

    incident_cancel(
        incident=duplicate, actor=None, source=Source.SYSTEM, duplicate_of=original.number
    )
    client.force_login(incident_manager)

    text = client.get(report_url(duplicate, format="md")).content.decode()

    assert f"- **Status:** Closed (cancelled as a duplicate of {original.number})" in text


def test_report_query_count_does_not_grow_with_the_timeline(
    client, viewer, technical_lead, make_incident
):
    short = make_incident()
    long = make_incident()
    for n in range(30):
        incident_note_add(incident=long, actor=technical_lead, source=Source.ADMIN, body=f"#{n}")
    client.force_login(viewer)
    client.get(report_url(short))

    counts = []
    for incident in (short, long):
        for query in ({}, {"format": "md"}):
            with CaptureQueriesContext(connection) as queries:
                assert client.get(report_url(incident, **query)).status_code == 200
            counts.append(len(queries))

    assert counts[0] == counts[2] and counts[1] == counts[3], counts
    # The core's 9, and a query per report provider of the apps above it (reviews: the
    # incident's action items, its published review).
    assert max(counts) <= 11, counts


def test_report_needs_view_permission(client, make_user, make_incident):
    incident = make_incident()
    client.force_login(make_user(username="staff-without-roles"))

    assert client.get(report_url(incident)).status_code == 403
    assert client.get(report_url(incident, format="md")).status_code == 403


# --- the admin index ----------------------------------------------------------------------


def test_index_shows_active_incidents_by_severity_and_those_past_target(
    client, viewer, make_incident
):
    late = make_incident(severity=1, detected_at=timezone.now() - timedelta(hours=1))
    recent = make_incident(severity=1)
    sev3 = make_incident(severity=3)
    make_incident(severity=2, status="closed")
    client.force_login(viewer)

    response = client.get(reverse("admin:index"))

    board = response.context["vigil_dashboard"]
    counts = {level["level"]: level["count"] for level in board["needs"].by_severity}
    assert counts == {1: 2, 2: 0, 3: 1, 4: 0}
    # Not acknowledged, ranked by severity then age; the late one is past its target.
    assert [row.number for row in board["rows"]] == [late.number, recent.number, sev3.number]
    assert board["needs"].breached_total == 1
    html = response.content.decode()
    changelist = reverse("admin:incidents_incident_changelist")
    assert f"{changelist}?severity__level__exact=1" in html
    assert f"{changelist}?breached=yes" in html
    assert "45 min over" in html and "to acknowledge" in html
    assert late.number in html


def test_index_says_when_nothing_needs_anyone(client, viewer, make_incident):
    make_incident(severity=4, status="acknowledged")
    client.force_login(viewer)

    html = client.get(reverse("admin:index")).content.decode()

    assert "Nothing needs you now" in html


def test_index_query_count_is_fixed(client, viewer, make_incident):
    def late(count: int) -> None:
        for _ in range(count):
            make_incident(severity=2, detected_at=timezone.now() - timedelta(hours=2))

    client.force_login(viewer)
    late(1)
    client.get(reverse("admin:index"))

    counts = []
    for extra in (0, 7):
        late(extra)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse("admin:index"))
        counts.append((len(queries), len(response.context["vigil_dashboard"]["rows"])))

    assert counts[0][0] == counts[1][0], counts
    assert [rows for _, rows in counts] == [1, 8]


def test_index_has_no_dashboard_for_staff_who_cannot_see_incidents(client, make_user):
    client.force_login(make_user(username="staff-without-roles"))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "vigil_dashboard" not in response.context
