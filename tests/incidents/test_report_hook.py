"""The incident report's extension points (``incidents.report_extensions``): follow-up actions
and extra sections that apps above the core supply, shown on the report page and in its
Markdown download, escaped and sanitized by the core."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from incidents.report_extensions import (
    FollowUpAction,
    ReportSection,
    report_follow_ups_register,
    report_follow_ups_unregister,
    report_section_register,
    report_section_unregister,
)

pytestmark = pytest.mark.django_db


def report_url(incident, md: bool = False) -> str:
    url = reverse("admin:incidents_incident_report", args=[incident.pk])
    return url + ("?format=md" if md else "")


@pytest.fixture
def dummy_providers(monkeypatch):
    """A follow-up provider and a section of a pretend app, taken out again afterwards (the
    registries are process-wide)."""
    _only_dummies(monkeypatch)
    seen: list[str] = []

    def follow_ups(*, incident):
        seen.append(incident.number)
        return [
            FollowUpAction(
                title="Raise the pool limit <script>alert(1)</script>",
                owner="Ada *Lovelace*",
                due=date(2026, 3, 2),
                status="Open",
                url="https://tracker.example.com/OPS-1",
            ),
            FollowUpAction(title="# Train the team", owner="", due=None, status="Done"),
        ]

    def section(*, incident):
        if incident.severity_id == 4:
            return None
        return ReportSection(
            title="Dummy review",
            html='<p>Reviewed <img src=x onerror="alert(1)"><script>x()</script>'
            '<a href="javascript:alert(1)">bad</a> <a href="#entry-1">cited</a></p>',
            markdown="Reviewed by the dummy app.",
        )

    report_follow_ups_register(key="dummy", provide=follow_ups)
    report_section_register(key="dummy-review", render=section)
    yield seen
    report_follow_ups_unregister(key="dummy")
    report_section_unregister(key="dummy-review")


def _only_dummies(monkeypatch):
    """Other apps' providers (reviews) stay out of these tests: only the dummies count."""
    from incidents import report_extensions

    monkeypatch.setattr(report_extensions, "_follow_up_providers", {})
    monkeypatch.setattr(report_extensions, "_section_renders", {})


def test_follow_up_actions_and_sections_come_from_the_providers(
    client, viewer, make_incident, monkeypatch
):
    _only_dummies(monkeypatch)
    incident = make_incident(status="resolved", severity=2)
    seen: list[str] = []

    def follow_ups(*, incident):
        seen.append(incident.number)
        return [FollowUpAction(title="Raise the pool limit", owner="Ada", due=None, status="Open")]

    report_follow_ups_register(key="dummy", provide=follow_ups)
    report_section_register(
        key="dummy-review",
        render=lambda *, incident: ReportSection(
            title="Dummy review", html="<p>Reviewed.</p>", markdown="Reviewed."
        ),
    )
    client.force_login(viewer)

    html = client.get(report_url(incident)).content.decode()
    text = client.get(report_url(incident, md=True)).content.decode()

    assert seen == [incident.number, incident.number]
    assert "Raise the pool limit — owner: Ada; due: no date; status: Open" in html
    assert 'id="report-dummy-review"' in html and "<p>Reviewed.</p>" in html
    follow_ups_md = text.split("## FOLLOW-UP ACTIONS\n")[1]
    assert follow_ups_md.lstrip().startswith(
        "- Raise the pool limit — owner: Ada; due: no date; status: Open"
    )
    assert "None recorded." not in follow_ups_md
    assert "## Dummy review\n\nReviewed.\n" in text
    assert text.index("## FOLLOW-UP ACTIONS") < text.index("## Dummy review")


def test_provider_values_are_escaped_and_section_html_sanitized(
    client, viewer, make_incident, dummy_providers
):
    incident = make_incident(status="resolved", severity=2)
    client.force_login(viewer)

    html = client.get(report_url(incident)).content.decode()
    text = client.get(report_url(incident, md=True)).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "Raise the pool limit &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="https://tracker.example.com/OPS-1"' in html
    assert "onerror" not in html and "x()" not in html.split("Dummy review")[1]
    assert "javascript:" not in html
    assert 'href="#entry-1"' in html
    # Markdown: a title cannot open HTML, a heading or emphasis.
    assert "- Raise the pool limit &lt;script&gt;alert(1)&lt;/script&gt; — owner: " in text
    assert "Ada \\*Lovelace\\*; due: 2 Mar 2026; status: Open" in text
    assert "- \\# Train the team — owner: nobody; due: no date; status: Done" in text


def test_a_section_with_nothing_to_add_is_left_out(client, viewer, make_incident, dummy_providers):
    incident = make_incident(status="resolved", severity=4)
    client.force_login(viewer)

    text = client.get(report_url(incident, md=True)).content.decode()

    assert "Dummy review" not in text
    assert "Train the team" in text


def test_a_failing_provider_is_shown_unavailable_not_none_recorded(
    client, viewer, make_incident, monkeypatch
):
    _only_dummies(monkeypatch)

    def broken(*, incident):
        raise RuntimeError("boom")

    report_follow_ups_register(key="broken", provide=broken)
    report_section_register(key="broken-section", render=broken)
    incident = make_incident(status="resolved")
    client.force_login(viewer)

    response = client.get(report_url(incident))
    text = client.get(report_url(incident, md=True)).content.decode()

    assert response.status_code == 200
    follow_ups_md = text.split("## FOLLOW-UP ACTIONS\n")[1]
    assert "None recorded." not in follow_ups_md
    assert "Some follow-up actions are unavailable (an error was logged)." in follow_ups_md
    assert "This section is unavailable." in text


def test_without_providers_the_report_records_no_follow_ups(
    client, viewer, make_incident, monkeypatch
):
    _only_dummies(monkeypatch)
    incident = make_incident(status="resolved")
    client.force_login(viewer)

    text = client.get(report_url(incident, md=True)).content.decode()

    assert text.split("## FOLLOW-UP ACTIONS\n")[1].lstrip().startswith("None recorded.")


def test_registering_a_key_again_replaces_the_provider(make_incident, monkeypatch):
    from incidents.report_extensions import report_follow_ups

    _only_dummies(monkeypatch)
    incident = make_incident()
    first = FollowUpAction(title="first", owner="", due=None, status="Open")
    second = FollowUpAction(title="second", owner="", due=None, status="Open")
    report_follow_ups_register(key="same", provide=lambda *, incident: [first])
    report_follow_ups_register(key="same", provide=lambda *, incident: [second])

    assert report_follow_ups(incident=incident).actions == [second]
