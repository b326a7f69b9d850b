"""The admin index's "What needs you now": one ranked list (not acknowledged by severity then
age, past target, what is overdue from me, my incidents, what is due from me later), each row
counting down to its deadline in words; due-from-me rows from the communications and reviews
providers; who is on call from escalation; the fragment the page polls (staff who may view
incidents only); a query count that does not grow with the incidents; the model index under
"Administration"; "Recent actions" one line per object."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from communications.models import FirstUpdateClock, StakeholderSchedule
from incidents.admin.extensions import (
    DueItem,
    admin_due_provider_register,
    admin_due_provider_unregister,
)
from incidents.models import Incident, ResponseRole, Source
from incidents.services import incident_acknowledge, incident_create, incident_role_assign
from reviews.models import DocumentationClock, Review
from reviews.services.actions import action_item_create
from tests.events import follow_events, followed
from tests.factories import IncidentFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def index(client) -> str:
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    return response.content.decode()


def needs_list(html: str) -> str:
    start = html.index('id="vigil-needs"')
    return html[start : html.index("</ol>", start)]


def rows(client) -> list:
    return client.get(reverse("admin:index")).context["vigil_dashboard"]["rows"]


def incident(*, severity: int, ago: timedelta = timedelta(0), **kwargs) -> Incident:
    return IncidentFactory(severity=severity, detected_at=T0 - ago, **kwargs)


def assign(incident: Incident, role: str, user) -> None:
    incident_role_assign(incident=incident, role=role, user=user, actor=None, source=Source.SYSTEM)


def test_not_acknowledged_first_by_severity_then_age_then_past_target_then_mine(
    client, incident_manager
):
    sev3 = incident(severity=3, ago=10 * MIN, title="Slow search")
    sev1_new = incident(severity=1, ago=5 * MIN, title="Checkout down")
    sev1_old = incident(severity=1, ago=20 * MIN, title="Payments down")
    # Acknowledged an hour after its one-hour response target: past target.
    late = incident(severity=2, ago=2 * 60 * MIN, status="acknowledged", title="Late one")
    mine = incident(severity=4, status="investigating", title="Typo on the status page")
    assign(mine, ResponseRole.INCIDENT_MANAGER, incident_manager)
    assign(sev3, ResponseRole.TECHNICAL_LEAD, incident_manager)
    someone_elses = incident(severity=4, status="investigating", title="Not mine")
    incident(severity=1, status="resolved", title="Over already")
    client.force_login(incident_manager)

    ranked = rows(client)

    assert [row.number for row in ranked] == [
        sev1_old.number,
        sev1_new.number,
        sev3.number,
        late.number,
        mine.number,
    ]
    assert [row.reason for row in ranked] == [
        "Not acknowledged",
        "Not acknowledged",
        "Not acknowledged",
        "Past target",
        "Your incident",
    ]
    html = needs_list(index(client))
    assert someone_elses.number not in html and "Over already" not in html
    # Server-side countdowns in words, with the deadline's ISO time for the script.
    assert "5 min over" in html  # Sev 1: 15 min to acknowledge, detected 20 min ago
    assert "10 min left" in html  # Sev 1 detected 5 min ago
    assert f'data-deadline="{sev1_new.response_due_at.isoformat()}"' in html
    assert "to acknowledge by 10:10" in html
    assert "You are Technical Lead" in html and "You are Incident Manager" in html
    # Acknowledge leads to the incident; the others open it.
    acknowledge = reverse("admin:incidents_incident_change", args=[sev1_old.pk])
    assert f'<a class="button vigil-need-action" href="{acknowledge}">Acknowledge' in html
    # Sev 1-2 incidents carry what the browser notification needs.
    assert f'data-incident-id="{sev1_old.pk}"' in html and 'data-severity="1"' in html


def test_the_summary_counts_by_severity_and_links_to_the_list(client, viewer):
    incident(severity=1)
    incident(severity=1)
    incident(severity=3, status="acknowledged")
    incident(severity=2, status="closed")
    client.force_login(viewer)

    response = client.get(reverse("admin:index"))

    needs = response.context["vigil_dashboard"]["needs"]
    assert {level["level"]: level["count"] for level in needs.by_severity} == {
        1: 2,
        2: 0,
        3: 1,
        4: 0,
    }
    html = response.content.decode()
    changelist = reverse("admin:incidents_incident_changelist")
    assert f"{changelist}?severity__level__exact=1" in html
    assert "3 active" in html and "2 not acknowledged" in html and "0 past target" in html


def test_each_part_stops_at_ten_and_says_how_many_more(client, incident_manager):
    for n in range(12):
        incident(severity=3, ago=n * MIN)
        mine = incident(severity=4, status="investigating")
        assign(mine, ResponseRole.INCIDENT_MANAGER, incident_manager)
    client.force_login(incident_manager)

    html = index(client)

    assert len(rows(client)) == 20
    changelist = reverse("admin:incidents_incident_changelist")
    assert f'<a href="{changelist}?status=open">2 more not acknowledged</a>' in html
    assert f'<a href="{changelist}?mine=yes">2 more of yours</a>' in html
    assert "more past target" not in html


def test_nothing_needs_me(client, viewer):
    incident(severity=4, status="acknowledged")
    client.force_login(viewer)

    assert "Nothing needs you now" in index(client)


def test_the_countdown_follows_the_clock(client, viewer, clock):
    sev2 = incident(severity=2)  # one hour to acknowledge
    client.force_login(viewer)
    assert "1 h left" in needs_list(index(client))

    clock.move_to(T0 + 63 * MIN)
    html = needs_list(index(client))

    assert "3 min over" in html
    assert 'vigil-clock-breached" datetime=' in html
    # Acknowledged late: still listed, now past target, counting to resolution.
    incident_acknowledge(incident=sev2, actor=None, source=Source.SYSTEM)
    row = rows(client)[0]
    assert (row.reason, row.deadline_label, row.countdown) == (
        "Past target",
        "to resolve",
        "6 h 57 min left",
    )


def test_due_from_me_comes_from_communications_and_reviews(client, communications_lead, clock):
    # An action item from an earlier incident, due yesterday: overdue.
    clock.move_to(T0 - timedelta(days=2))
    earlier = IncidentFactory(severity=3, status="resolved", title="Earlier")
    item = action_item_create(
        incident=earlier,
        actor=None,
        source=Source.SYSTEM,
        kind="immediate_fix",
        title="Add an alert on checkout errors",
        owner=communications_lead,
        due_date=date(2026, 3, 1),
    )
    clock.move_to(T0)
    create = followed(incident_create)
    ack = followed(incident_acknowledge)
    # Sev 1, customer-facing: the first public update is due 30 min after acknowledgement and
    # the stakeholder groups' updates run on their schedule.
    mine = create(
        actor=None,
        source=Source.SYSTEM,
        title="Checkout down",
        severity=1,
        customer_facing=True,
        roles={ResponseRole.COMMUNICATIONS_LEAD: communications_lead},
    )
    mine = ack(incident=mine, actor=None, source=Source.SYSTEM)
    theirs = create(
        actor=None, source=Source.SYSTEM, title="Not mine", severity=1, customer_facing=True
    )
    ack(incident=theirs, actor=None, source=Source.SYSTEM)
    assert FirstUpdateClock.objects.filter(incident=mine).exists()
    schedules = StakeholderSchedule.objects.filter(incident=mine, next_due_at__isnull=False)
    review = Review.objects.create(
        incident=theirs, due_date=date(2026, 3, 6), facilitator=communications_lead
    )
    client.force_login(communications_lead)

    ranked = rows(client)
    due = [row for row in ranked if row.tone == "due"]

    titles = [row.title for row in due]
    assert titles[0] == f"{earlier.number} · Add an alert on checkout errors"  # overdue
    assert f"{mine.number} · First public status update" in titles
    assert f"{theirs.number} · Book and hold the review" == titles[-1]  # due last
    for schedule in schedules:
        assert f"{mine.number} · Update for {schedule.group.name}" in titles
    assert len(due) == 3 + schedules.count()
    assert not any(theirs.number in t and "update" in t.lower() for t in titles)
    # Overdue before my own incidents' rows; the rest after, soonest first.
    reasons = [row.reason for row in ranked]
    assert reasons.index("Due from you: action item") < reasons.index("Due from you: status update")
    deadlines = [row.deadline for row in due[1:]]
    assert deadlines == sorted(deadlines)
    first = next(row for row in due if "First public" in row.title)
    assert first.countdown == "30 min left"
    html = needs_list(index(client))
    assert reverse("admin:reviews_actionitem_change", args=[item.pk]) in html
    assert reverse("admin:reviews_review_change", args=[review.pk]) in html
    # The action item was due by the end of yesterday (UTC here).
    assert due[0].countdown == "10 h over" and "10 h over" in html


def test_the_incident_report_is_due_from_the_incident_manager(client, incident_manager, viewer):
    resolved = IncidentFactory(
        severity=2, status="resolved", roles={ResponseRole.INCIDENT_MANAGER: incident_manager}
    )
    follow_events()
    clock = DocumentationClock.objects.get(incident=resolved)
    client.force_login(incident_manager)

    row = next(row for row in rows(client) if row.reason == "Due from you: incident report")

    assert row.title == f"{resolved.number} · Complete the incident report"
    assert row.deadline == clock.due_at and row.countdown == "2 d left"
    assert row.url.endswith("#panel-documentation")
    client.force_login(viewer)
    assert not any(row.tone == "due" for row in rows(client))


def test_a_failing_due_provider_leaves_the_rest(client, viewer, caplog):
    def broken(**_):
        raise RuntimeError("boom")

    def fine(*, user, now):
        return [DueItem(key="1", kind="check", title="Check the backups", url="/x/", due_at=now)]

    admin_due_provider_register(key="test-broken", provide=broken)
    admin_due_provider_register(key="test-fine", provide=fine)
    try:
        client.force_login(viewer)
        html = index(client)
    finally:
        admin_due_provider_unregister(key="test-broken")
        admin_due_provider_unregister(key="test-fine")

    assert "Check the backups" in html and "Due from you: check" in html
    assert "could not be read just now (test-broken)" in html
    assert "Due-from-user provider 'test-broken' failed" in caplog.text


def test_who_is_on_call_now(client, viewer):
    role = ResponseRole.objects.select_related("primary_contact").get(
        key=ResponseRole.INCIDENT_MANAGER
    )
    role.primary_contact.user = viewer
    role.primary_contact.phone = "+14155550100"
    role.primary_contact.save()
    client.force_login(viewer)

    html = index(client)

    start = html.index('id="index-panel-on-call"')
    panel = html[start : html.index("</section>", start)]
    assert "On call now" in panel
    for role in ResponseRole.objects.select_related("primary_contact", "backup_contact"):
        assert role.name in panel
        assert role.primary_contact.name in panel and role.backup_contact.name in panel
    assert "(you)" in panel and 'href="tel:+14155550100"' in panel
    # Inside the live list, refreshed with it.
    assert start > html.index('id="vigil-needs"')


def test_the_fragment_is_the_list_alone(client, viewer):
    sev1 = incident(severity=1)
    client.force_login(viewer)

    response = client.get(reverse("admin:vigil_needs"), headers={"HX-Request": "true"})

    assert response.status_code == 200
    html = response.content.decode()
    assert '<div id="vigil-needs"' in html and "<html" not in html
    assert sev1.number in html and "Updated <time" in html and ">10:00:00</time>" in html
    assert f'hx-get="{reverse("admin:vigil_needs")}"' in html
    assert response.headers["Cache-Control"].startswith("max-age=0")


def test_the_fragment_needs_staff_and_the_view_permission(client, make_user):
    url = reverse("admin:vigil_needs")
    login = reverse("admin:login")

    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(login)
    # A poll from a page whose session ended reloads the page (which leads to the login).
    polled = client.get(url, headers={"HX-Request": "true"})
    assert polled.status_code == 200 and polled["HX-Refresh"] == "true"
    assert polled.content == b""

    client.force_login(make_user(username="not-staff", is_staff=False))
    assert client.get(url).status_code == 302

    client.force_login(make_user(username="staff-without-roles"))
    assert client.get(url).status_code == 403


def test_staff_without_rights_see_neither_the_dashboard_nor_administration(client, make_user):
    client.force_login(make_user(username="staff-without-roles"))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "vigil_dashboard" not in response.context
    html = response.content.decode()
    assert 'id="vigil-needs"' not in html and "Administration" not in html


def test_administration_comes_below_the_dashboard(client, superuser):
    client.force_login(superuser)

    html = index(client)

    assert html.index('id="vigil-needs"') < html.index('id="vigil-administration-heading"')
    assert html.index('id="vigil-administration-heading"') < html.index('class="app-incidents')


def test_recent_actions_show_each_object_once(client, superuser, clock):
    incident_type = ContentType.objects.get_for_model(Incident)
    first = incident(severity=3, title="Edited three times")
    second = incident(severity=3, title="Edited once")
    for n, target in enumerate([first, first, second, first]):
        clock.move_to(T0 + n * MIN)
        LogEntry.objects.create(
            user=superuser,
            content_type=incident_type,
            object_id=str(target.pk),
            object_repr=str(target),
            action_flag=CHANGE,
            change_message=f"Change {n}",
        )
    client.force_login(superuser)

    html = index(client)

    sidebar = html[html.index('id="recent-actions-module"') :]
    assert sidebar.count(str(first)) == 1 and sidebar.count(str(second)) == 1
    assert sidebar.index(str(first)) < sidebar.index(str(second))  # latest first


def _many(count: int, incident_manager) -> None:
    for n in range(count):
        waiting = incident(severity=1 + n % 4, ago=n * MIN)
        late = incident(severity=2, ago=3 * 60 * MIN, status="acknowledged")
        mine = incident(severity=3, status="investigating")
        for target in (waiting, late, mine):
            assign(target, ResponseRole.INCIDENT_MANAGER, incident_manager)


@pytest.mark.parametrize("url", ["admin:index", "admin:vigil_needs"])
def test_the_query_count_does_not_grow_with_the_incidents(
    client, incident_manager, url, django_assert_max_num_queries
):
    client.force_login(incident_manager)
    _many(1, incident_manager)
    client.get(reverse(url))  # warm the per-request caches (content types, permissions)
    counts = []
    for more in (2, 27):  # 3, then 30 of each kind
        _many(more, incident_manager)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse(url))
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    with django_assert_max_num_queries(counts[1]):
        client.get(reverse(url))
