"""The review page (§8.2) in the admin, and the review in the incident report: every section
with its time box, the incident's KPIs against target, citations of timeline entries, holding
and publishing (refused when empty or without actions), read-only once published, Markdown
escaped and sanitized, permissions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from incidents.models import Source
from incidents.services import incident_transition
from reviews.models import (
    ActionItem,
    ActionKind,
    KnowledgeArticle,
    Review,
    ReviewAttendee,
    ReviewStatus,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def page(review) -> str:
    return reverse("admin:reviews_review_change", args=[review.pk])


def step(review, name) -> str:
    return reverse(f"admin:reviews_review_{name}", args=[review.pk])


def report(incident, md=False) -> str:
    url = reverse("admin:incidents_incident_report", args=[incident.pk])
    return url + ("?format=md" if md else "")


@pytest.fixture
def closed(make_incident):
    """A Sev 1 with known times: impact 08:52, detected 09:00, acknowledged 09:04,
    mitigated (monitoring) 09:40, resolved 11:00 — then closed."""
    with time_machine.travel(T0, tick=False) as clock:
        incident = make_incident(
            severity=1,
            title="Checkout down",
            summary="Checkout failed for all customers.",
            business_impact="About 1,800 orders delayed.",
            impact_started_at=T0 - timedelta(minutes=8),
        )
        for minutes, action, extra in [
            (4, "acknowledge", {}),
            (10, "investigate", {}),
            (20, "mitigate", {}),
            (40, "monitor", {}),
            (120, "resolve", {"resolution": "Rolled back release 42."}),
        ]:
            clock.move_to(T0 + timedelta(minutes=minutes))
            incident = incident_transition(
                incident=incident, action=action, actor=None, source=Source.SYSTEM, **extra
            )
    return incident


@pytest.fixture
def review(closed, incident_manager):
    review = Review.objects.create(
        incident=closed, due_date=date(2026, 3, 9), facilitator=incident_manager
    )
    ReviewAttendee.objects.create(
        review=review, user=incident_manager, name="Ida Manager", email="im@example.com",
        reason="facilitator",
    )  # fmt: skip
    ReviewAttendee.objects.create(
        review=review, name="Sam Owner", email="sam@example.com", reason="service_owner"
    )
    return review


def _action(review, owner, **kwargs):
    return ActionItem.objects.create(
        incident=review.incident,
        review=review,
        kind=kwargs.pop("kind", ActionKind.IMMEDIATE_FIX),
        title=kwargs.pop("title", "Raise the pool limit"),
        owner=owner,
        due_date=kwargs.pop("due_date", date(2026, 3, 20)),
        **kwargs,
    )


def test_the_page_walks_the_agenda_with_its_time_boxes(client, incident_manager, review):
    client.force_login(incident_manager)

    response = client.get(page(review))

    assert response.status_code == 200
    html = response.content.decode()
    for heading, minutes in [
        ("1. Incident overview", 10),
        ("2. What went well", 20),
        ("3. What went wrong", 30),
        ("4. Root cause analysis", 20),
        ("6. Action items", 10),
    ]:
        assert heading in html
        after = html.split(heading, 1)[1][:80]
        assert f'<span class="vigil-timebox">{minutes} min</span>' in after
    for label in [
        "Detection delays", "Communication failures", "Technical issues", "Process breakdowns",
        "Primary root cause", "Contributing factors", "Systemic issues", "Lessons learned",
        "Attendance", "Checkout failed for all customers.", "About 1,800 orders delayed.",
        "Sam Owner",
    ]:  # fmt: skip
        assert label in html
    for field in ["overview", "went_well", "wrong_detection", "primary_cause", "lessons_learned"]:
        assert f'name="{field}"' in html  # a draft: the sections are editable
    assert "90 minutes" in html
    assert 'name="viewport"' in html  # the admin's responsive layout
    assert "reviews/review.css" in html


def test_kpis_of_a_known_incident_against_the_severity_targets(client, viewer, review):
    client.force_login(viewer)

    kpis = {k.key: k for k in client.get(page(review)).context["kpis"]}

    assert kpis["detect"].taken == timedelta(minutes=8)
    assert kpis["detect"].target == timedelta(minutes=5) and kpis["detect"].met is False
    assert kpis["acknowledge"].taken == timedelta(minutes=4)
    assert kpis["acknowledge"].target == timedelta(minutes=15)  # Sev 1's response target
    assert kpis["acknowledge"].met is True
    assert kpis["mitigate"].taken == timedelta(minutes=40) and kpis["mitigate"].met is None
    assert kpis["resolve"].taken == timedelta(hours=2)
    assert kpis["resolve"].target == timedelta(hours=4) and kpis["resolve"].met is True
    html = client.get(page(review)).content.decode()
    assert "8m" in html and "2h" in html and "missed" in html


def test_key_moments_are_marked_and_every_entry_has_an_anchor(client, viewer, review):
    client.force_login(viewer)

    response = client.get(page(review))

    html = response.content.decode()
    entries = list(review.incident.timeline.all())
    for entry in entries:
        assert f'id="entry-{entry.pk}"' in html
    moments = [row["moment"].moment for row in response.context["timeline"] if row["moment"].moment]
    assert moments == [
        "Detection",
        "Acknowledgement",
        "Mitigation started",
        "Mitigated",
        "Resolution",
    ]


def test_a_citation_links_to_the_timeline_entry(client, incident_manager, review):
    entry = review.incident.timeline.get(data__action="resolve")
    client.force_login(incident_manager)
    html = client.get(page(review)).content.decode()
    assert f'data-cite="[11:00 Status change](#entry-{entry.pk})"' in html

    response = client.post(
        step(review, "sections"),
        {"went_well": f"Rolled back fast, see [the resolution](#entry-{entry.pk})."},
    )

    assert response.status_code == 302
    html = client.get(page(review)).content.decode()
    assert (
        f'<a href="#entry-{entry.pk}" rel="nofollow noopener noreferrer">the resolution</a>' in html
    )


def test_sections_are_markdown_rendered_and_sanitized(client, incident_manager, review):
    client.force_login(incident_manager)
    client.post(
        step(review, "sections"),
        {
            "overview": "**Bold** <script>alert(1)</script> [x](javascript:alert(1))",
            "primary_cause": "<img src=x onerror=alert(1)>",
        },
    )

    html = client.get(page(review)).content.decode()

    assert "<strong>Bold</strong>" in html
    assert "<script>alert(1)</script>" not in html
    assert 'href="javascript:' not in html
    assert "<img src=x" not in html


def test_publish_refused_until_held_then_when_empty_then_without_actions(
    client, incident_manager, review
):
    client.force_login(incident_manager)

    client.post(step(review, "publish"))
    review.refresh_from_db()
    assert review.status == ReviewStatus.BOOKED
    messages = [m.message for m in client.get(page(review)).context["messages"]]
    assert "mark it held first" in messages[-1]

    attendee = review.attendees.get(email="sam@example.com")
    client.post(
        step(review, "held"),
        {"held_at": "2026-03-05T10:00", f"attended_{attendee.pk}": "yes"},
    )
    review.refresh_from_db()
    attendee.refresh_from_db()
    assert review.status == ReviewStatus.HELD and attendee.attended is True
    assert review.incident.timeline.filter(data__review_step="held").count() == 1

    client.post(step(review, "publish"))
    review.refresh_from_db()
    assert review.status == ReviewStatus.HELD
    message = [m.message for m in client.get(page(review)).context["messages"]][-1]
    assert "The review is empty" in message

    client.post(step(review, "sections"), {"primary_cause": "A lowered pool limit."})
    client.post(step(review, "publish"))
    review.refresh_from_db()
    assert review.status == ReviewStatus.HELD
    message = [m.message for m in client.get(page(review)).context["messages"]][-1]
    assert "Add at least one action item, or record why there are none" in message

    client.post(step(review, "sections"), {"no_actions_reason": "Fixed for good by the rollback."})
    client.post(step(review, "publish"))
    review.refresh_from_db()
    assert review.status == ReviewStatus.PUBLISHED
    assert review.published_by == incident_manager
    assert review.incident.timeline.filter(data__review_step="published").count() == 1
    assert KnowledgeArticle.objects.filter(review=review).count() == 1  # lessons → knowledge base


def test_published_review_is_read_only(client, incident_manager, review):
    _action(review, incident_manager)
    review.primary_cause = "A lowered pool limit."
    review.status = ReviewStatus.HELD
    review.held_at = T0 + timedelta(days=3)
    review.save()
    client.force_login(incident_manager)
    client.post(step(review, "publish"))

    html = client.get(page(review)).content.decode()
    response = client.post(step(review, "sections"), {"primary_cause": "Changed afterwards."})

    assert 'name="primary_cause"' not in html and "read-only since" in html
    assert response.status_code == 409
    review.refresh_from_db()
    assert review.primary_cause == "A lowered pool limit."


def test_the_report_shows_follow_up_actions_and_the_published_review(
    client, incident_manager, viewer, review
):
    _action(review, incident_manager, title="Alert on pool <b>saturation</b>")
    review.primary_cause = "# A lowered pool limit <script>x</script>"
    review.went_well = "Rolled back [fast](#entry-1)."
    review.status = ReviewStatus.HELD
    review.held_at = T0 + timedelta(days=3)
    review.save()
    client.force_login(viewer)
    before = client.get(report(review.incident, md=True)).content.decode()
    assert "POST-INCIDENT REVIEW" not in before  # not yet published
    assert "Alert on pool &lt;b&gt;saturation&lt;/b&gt; — owner: Im; due: 20 Mar 2026" in before

    client.force_login(incident_manager)
    client.post(step(review, "publish"))
    client.force_login(viewer)
    text = client.get(report(review.incident, md=True)).content.decode()
    html = client.get(report(review.incident)).content.decode()

    assert "## POST-INCIDENT REVIEW" in text
    assert "\\# A lowered pool limit &lt;script&gt;x&lt;/script&gt;" in text
    assert "<script>x</script>" not in html
    assert f'href="{page(review)}#entry-1"' in html  # citations lead to the review page
    assert "Alert on pool &lt;b&gt;saturation&lt;/b&gt;" in html
    assert "status: Open" in html


def test_markdown_export_of_the_review(client, viewer, review):
    review.lessons_learned = "Keep <b>pool</b> limits under review\n- one"
    review.save()
    client.force_login(viewer)

    response = client.get(step(review, "markdown"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.content.decode()
    assert text.startswith(f"# Post-incident review of {review.incident.number}: Checkout down")
    assert "Keep &lt;b&gt;pool&lt;/b&gt; limits under review\n\\- one" in text
    assert "Time to acknowledge (detected → acknowledged): 4m — target 15m, met" in text


def test_cause_category_is_chosen_next_to_the_primary_cause(client, incident_manager, review):
    client.force_login(incident_manager)
    html = client.get(page(review)).content.decode()
    form = html.split('id="section-primary_cause"', 1)[1].split('id="agenda-lessons"', 1)[0]
    assert '<select name="cause_category" id="id_cause_category">' in form
    assert '<option value="" selected>Not categorised</option>' in form

    response = client.post(
        step(review, "sections"),
        {"primary_cause": "A lowered pool limit.", "cause_category": "change"},
    )

    assert response.status_code == 302
    review.refresh_from_db()
    assert review.cause_category == "change"
    assert review.primary_cause == "A lowered pool limit."
    assert review.history.first().history_change_reason == "sections: primary_cause, cause_category"
    html = client.get(page(review)).content.decode()
    assert '<option value="change" selected>Change or deployment</option>' in html

    client.post(step(review, "sections"), {"primary_cause": "Only the text."})
    review.refresh_from_db()
    assert review.cause_category == "change"  # a form without the field leaves it as it is


def test_an_unknown_cause_category_is_a_400_and_changes_nothing(client, incident_manager, review):
    client.force_login(incident_manager)

    response = client.post(
        step(review, "sections"), {"overview": "Written.", "cause_category": "gremlins"}
    )

    assert response.status_code == 400
    assert "One of change, configuration" in response.content.decode()
    review.refresh_from_db()
    assert review.cause_category == "" and review.overview == ""


def test_cause_category_in_the_export_the_read_only_page_and_the_report(
    client, incident_manager, viewer, review
):
    client.force_login(viewer)
    text = client.get(step(review, "markdown")).content.decode()
    assert "Root cause category: not categorised" in text

    _action(review, incident_manager)
    review.primary_cause = "A lowered pool limit."
    review.cause_category = "third_party"
    review.status = ReviewStatus.HELD
    review.held_at = T0 + timedelta(days=3)
    review.save()
    text = client.get(step(review, "markdown")).content.decode()
    cause = text.split("Primary root cause", 1)[1].split("Contributing factors", 1)[0]
    assert "A lowered pool limit.\n\nRoot cause category: Third-party dependency" in cause
    client.force_login(incident_manager)
    client.post(step(review, "publish"))
    client.force_login(viewer)

    page_html = client.get(page(review)).content.decode()
    report_md = client.get(report(review.incident, md=True)).content.decode()
    report_html = client.get(report(review.incident)).content.decode()

    assert 'name="cause_category"' not in page_html
    assert "<p>Root cause category: Third-party dependency</p>" in page_html
    assert "Root cause category: Third-party dependency" in report_md
    assert "<p>Root cause category: Third-party dependency</p>" in report_html


def test_permissions(client, viewer, review, make_user):
    client.force_login(viewer)
    html = client.get(page(review)).content.decode()
    assert 'name="primary_cause"' not in html  # readers see the page, not the forms

    response = client.post(step(review, "sections"), {"primary_cause": "Mine."})
    client.post(step(review, "held"), {"held_at": "2026-03-05T10:00"})

    assert response.status_code == 403
    review.refresh_from_db()
    assert review.primary_cause == "" and review.status == ReviewStatus.BOOKED
    outsider = make_user()
    client.force_login(outsider)
    assert client.get(page(review)).status_code == 403


def test_a_cancelled_incident_review_is_refused(client, incident_manager, make_incident):
    incident = make_incident(status="cancelled")
    review = Review.objects.create(incident=incident, due_date=date(2026, 3, 9))
    client.force_login(incident_manager)

    response = client.post(step(review, "sections"), {"overview": "Hm."})

    assert response.status_code == 400
    assert "was cancelled" in response.content.decode()
    review.refresh_from_db()
    assert review.overview == ""
