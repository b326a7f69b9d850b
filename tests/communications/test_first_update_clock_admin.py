"""The 30-minute rule's countdown in the admin: a panel on the incident page and, on the admin
index, the customer-facing incidents still waiting for their first public update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from communications.models import StatusUpdate, UpdateState, UpdateStatus
from communications.services.clock import first_update_published
from communications.services.clock_sweep import first_update_sweep
from incidents.models import Incident, Source
from incidents.services import incident_acknowledge, incident_create, incident_update
from tests.events import followed

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def confirmed(title: str = "Checkout is down", *, customer_facing: bool = True) -> Incident:
    incident = followed(incident_create)(
        actor=None, source=Source.SYSTEM, title=title, severity=2, customer_facing=customer_facing
    )
    return followed(incident_acknowledge)(incident=incident, actor=None, source=Source.SYSTEM)


def panel_text(client, incident: Incident) -> str:
    html = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content
    html = html.decode()
    start = html.index('id="panel-first-update"')
    return html[start : html.index("</section>", start)]


def index(client) -> str:
    return client.get(reverse("admin:index")).content.decode()


def test_the_incident_page_counts_down_to_the_due_time(client, viewer, clock):
    incident = confirmed()
    client.force_login(viewer)
    clock.move_to(T0 + 18 * MIN)

    assert "First public update due in 12 min (by 10:30 UTC)" in panel_text(client, incident)

    clock.move_to(T0 + 29 * MIN + 30 * timedelta(seconds=1))
    assert "First public update due in 1 min (by 10:30 UTC)" in panel_text(client, incident)


def test_the_incident_page_says_by_how_much_the_update_is_overdue(client, viewer, clock):
    incident = confirmed()
    client.force_login(viewer)
    clock.move_to(T0 + 30 * MIN)
    first_update_sweep()
    clock.move_to(T0 + 33 * MIN)

    text = panel_text(client, incident)

    assert "First public update overdue by 3 min (was due at 10:30 UTC)" in text
    assert "vigil-clock-breached" in text


def test_the_incident_page_says_when_the_rule_was_met(client, viewer, clock):
    clock.move_to(T0 + 4 * MIN)
    incident = confirmed()
    clock.move_to(T0 + 12 * MIN)
    StatusUpdate.objects.create(
        incident=incident,
        public_title="Checkout errors",
        public_status=UpdateStatus.INVESTIGATING,
        body="We are looking into it.",
        state=UpdateState.PUBLISHED,
        published_at=T0 + 12 * MIN,
    )
    first_update_published(incident=incident, at=T0 + 12 * MIN)
    client.force_login(viewer)
    clock.move_to(T0 + 50 * MIN)

    text = panel_text(client, incident)

    assert "Met at 10:12 UTC (8 min after confirmation)" in text
    assert "vigil-clock-met" in text


def test_an_internal_incident_page_says_no_public_update_is_required(client, viewer, clock):
    incident = confirmed(customer_facing=False)
    client.force_login(viewer)

    assert "Not customer-facing: no public update is required" in panel_text(client, incident)


def test_a_stopped_clock_says_why(client, viewer, clock):
    incident = confirmed()
    followed(incident_update)(
        incident=incident, actor=None, source=Source.SYSTEM, customer_facing=False
    )
    client.force_login(viewer)

    assert "Stopped: the incident is not customer-facing" in panel_text(client, incident)


def test_the_admin_index_lists_incidents_waiting_for_their_first_update(client, viewer, clock):
    late = confirmed("Payments failing")
    clock.move_to(T0 + 10 * MIN)
    soon = confirmed("Checkout slow")
    confirmed("Internal build broken", customer_facing=False)
    met = confirmed("Login errors")
    StatusUpdate.objects.create(
        incident=met,
        public_title="Login errors",
        public_status=UpdateStatus.INVESTIGATING,
        body="We are looking into it.",
        state=UpdateState.PUBLISHED,
        published_at=T0 + 10 * MIN,
    )
    first_update_published(incident=met, at=T0 + 10 * MIN)
    clock.move_to(T0 + 35 * MIN)
    first_update_sweep()
    client.force_login(viewer)

    html = index(client)

    start = html.index('id="index-panel-first-update"')
    section = html[start : html.index("</section>", start)]
    assert "First public updates due" in section
    assert section.index(late.number) < section.index(soon.number)  # soonest due first
    assert "overdue by 5 min (was due at 10:30 UTC)" in section
    assert "due in 5 min (by 10:40 UTC)" in section
    assert met.number not in section
    assert "Internal build broken" not in section
    # After the "What needs you now" list, with the other workspace panels.
    assert html.index('id="vigil-needs"') < start


def test_the_admin_index_shows_no_panel_when_nothing_is_due(client, viewer, clock):
    confirmed(customer_facing=False)
    client.force_login(viewer)

    assert 'id="index-panel-first-update"' not in index(client)


def test_the_countdown_is_hidden_from_staff_without_the_view_permission(client, make_user, clock):
    incident = confirmed()
    client.force_login(make_user(username="staff-only"))

    assert 'id="index-panel-first-update"' not in index(client)
    assert incident.number not in index(client)


def test_the_index_panel_costs_the_same_queries_for_few_or_many_incidents(client, viewer, clock):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(viewer)

    def clock_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            index(client)
        return sum("communications_firstupdateclock" in q["sql"] for q in queries)

    confirmed("First")
    few = clock_queries()
    for n in range(8):
        confirmed(f"More {n}")
    many = clock_queries()

    # The index panel's, and the dashboard's "due from you" (first updates of my incidents).
    assert few == many == 2
