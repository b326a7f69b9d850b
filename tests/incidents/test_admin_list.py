"""The incident list in the admin: "what needs me now" columns, filters, search, list actions
and a query count that does not grow with the rows shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents.models import Kind, Source, Status, TimelineEntry
from incidents.services import incident_role_assign
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

LIST = reverse("admin:incidents_incident_changelist")


def shown(response) -> list[str]:
    """Incident IDs on the page, in order."""
    return [incident.number for incident in response.context["cl"].result_list]


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)._queued_messages]


@pytest.fixture
def breached(make_incident):
    """A Sev 1 incident detected an hour ago and still open: its response target passed."""
    return make_incident(
        severity=1, title="Payments down", detected_at=timezone.now() - timedelta(hours=1)
    )


@pytest.mark.parametrize(
    "role",
    ["incident_manager", "technical_lead", "communications_lead", "business_liaison", "viewer"],
)
def test_list_renders_for_every_role_group(client, request, role, make_incident):
    incident = make_incident()
    client.force_login(request.getfixturevalue(role))

    response = client.get(LIST)

    assert response.status_code == 200
    assert shown(response) == [incident.number]


def test_default_view_is_active_incidents_and_all_shows_the_rest(client, viewer, make_incident):
    active = make_incident(status="monitoring")
    closed = make_incident(status="closed")
    cancelled = make_incident(status="cancelled")
    client.force_login(viewer)

    assert shown(client.get(LIST)) == [active.number]
    assert set(shown(client.get(LIST, {"status": "all"}))) == {
        active.number,
        closed.number,
        cancelled.number,
    }
    assert shown(client.get(LIST, {"status": "closed"})) == [closed.number]
    assert client.get(LIST, {"status": "bogus"}).status_code == 302  # admin's "?e=1" page


def test_active_incidents_are_listed_most_severe_first(client, viewer, make_incident):
    low = make_incident(severity=4)
    critical = make_incident(severity=1, detected_at=timezone.now() - timedelta(minutes=5))
    high = make_incident(severity=2)
    client.force_login(viewer)

    assert shown(client.get(LIST)) == [critical.number, high.number, low.number]


def test_columns_answer_what_needs_me_now(client, viewer, incident_manager, breached, service):
    incident_role_assign(
        incident=breached,
        role="incident_manager",
        user=incident_manager,
        actor=None,
        source=Source.SYSTEM,
    )
    from incidents.services import incident_update

    incident_update(incident=breached, actor=None, source=Source.SYSTEM, services=["checkout"])
    client.force_login(viewer)

    html = client.get(LIST).content.decode()

    assert breached.number in html
    assert "vigil-sev-1" in html
    assert "vigil-status-open" in html
    assert "P3" in html
    assert "Breached" in html and "response · 45 min ago" in html
    assert "1 h" in html  # age
    assert "Checkout" in html
    assert incident_manager.get_full_name() in html


def test_running_clock_shows_time_left_to_the_current_target(client, viewer, make_incident):
    make_incident(severity=2)  # response target 1 h
    acknowledged = make_incident(severity=3, status="acknowledged")  # resolution 24 h
    client.force_login(viewer)

    html = client.get(LIST).content.decode()

    assert "to response" in html
    assert "to resolution" in html
    assert acknowledged.number in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"severity__level__exact": "1"}, {"sev1"}),
        ({"priority": "1"}, {"sev1"}),
        ({"priority": "4"}, {"low"}),
        ({"breached": "yes"}, {"sev1"}),
        ({"breached": "no"}, {"low", "checkout"}),
        ({"customer_facing__exact": "1"}, {"checkout"}),
        ({"status": "all", "customer_facing__exact": "0"}, {"sev1", "low", "closed"}),
    ],
)
def test_filters(client, viewer, make_incident, service, params, expected):
    incidents = {
        "sev1": make_incident(
            severity=1,
            impact="high",
            urgency="high",
            detected_at=timezone.now() - timedelta(hours=1),
        ),
        "low": make_incident(severity=4, impact="low", urgency="low"),
        "checkout": make_incident(severity=3, services=["checkout"]),
        "closed": make_incident(severity=3, status="closed"),
    }
    client.force_login(viewer)

    response = client.get(LIST, params)

    assert set(shown(response)) == {incidents[name].number for name in expected}


def test_service_filter(client, viewer, make_incident, service):
    on_checkout = make_incident(services=["checkout"])
    make_incident(services=[ServiceFactory(slug="search").slug])
    client.force_login(viewer)

    response = client.get(LIST, {"service": service.slug})

    assert shown(response) == [on_checkout.number]


def test_search_by_id_and_by_title(client, viewer, make_incident):
    payments = make_incident(title="Payments API timing out")
    http = make_incident(title="Search returns HTTP 500")
    client.force_login(viewer)

    by_id = client.get(LIST, {"q": payments.number.lower()})
    by_part_of_id = client.get(LIST, {"q": payments.number[4:13]})
    by_title = client.get(LIST, {"q": "timing"})
    by_number_in_title = client.get(LIST, {"q": "500"})

    assert shown(by_id) == [payments.number]
    assert len(shown(by_part_of_id)) == 2  # both IDs share the day
    assert shown(by_title) == [payments.number]
    assert shown(by_number_in_title) == [http.number]


def test_list_query_count_does_not_grow_with_rows(
    client, viewer, incident_manager, make_incident, service
):
    def add(count: int) -> None:
        for _ in range(count):
            incident = make_incident(services=["checkout"])
            incident_role_assign(
                incident=incident,
                role="incident_manager",
                user=incident_manager,
                actor=None,
                source=Source.SYSTEM,
            )

    client.force_login(viewer)

    def measure(expected_rows: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(LIST, {"status": "all"})
        assert len(shown(response)) == expected_rows
        return len(queries)

    add(5)
    client.get(LIST)  # warm the content-type cache
    five = measure(5)
    add(45)
    fifty = measure(50)

    assert five == fifty, (five, fifty)
    assert fifty <= 12


# --- list actions ---------------------------------------------------------------------------------


def test_acknowledge_selected_reports_what_happened_to_each(client, technical_lead, make_incident):
    opened = [make_incident() for _ in range(3)]
    already = make_incident(status="investigating")
    cancelled = make_incident(status="cancelled")
    client.force_login(technical_lead)

    response = client.post(
        LIST + "?status=all",
        {
            "action": "acknowledge_selected",
            "_selected_action": [i.pk for i in [*opened, already, cancelled]],
        },
    )

    assert response.status_code == 302
    [message] = messages_of(response)
    assert message.startswith("3 acknowledged, 1 already acknowledged, 1 failed: ")
    assert f"{cancelled.number}: Cannot acknowledge an incident that is cancelled" in message
    for incident in opened:
        incident.refresh_from_db()
        assert incident.status == Status.ACKNOWLEDGED
        entry = TimelineEntry.objects.get(incident=incident, kind=Kind.STATUS)
        assert (entry.source, entry.actor) == (Source.ADMIN, technical_lead)


def test_close_selected_names_the_missing_fields_of_those_that_cannot_close(
    client, incident_manager, make_incident
):
    ready = make_incident(status="resolved", root_cause="Bad release.", business_impact="Slow.")
    from incidents.services import incident_resolve

    unready = make_incident(summary="")
    incident_resolve(incident=unready, actor=None, source=Source.SYSTEM, resolution="Fixed.")
    client.force_login(incident_manager)

    response = client.post(
        LIST + "?status=resolved",
        {"action": "close_selected", "_selected_action": [ready.pk, unready.pk]},
    )

    [message] = messages_of(response)
    assert message == (
        f"1 closed, 1 failed: {unready.number}: Cannot close yet: fill in Summary, "
        "Root cause, Business impact first."
    )
    ready.refresh_from_db()
    unready.refresh_from_db()
    assert (ready.status, unready.status) == (Status.CLOSED, Status.RESOLVED)


def test_actions_are_offered_only_to_roles_that_may_take_them(
    client, viewer, technical_lead, make_incident
):
    incident = make_incident()
    client.force_login(technical_lead)
    offered = set(client.get(LIST).context["action_form"].fields["action"].choices)
    client.force_login(viewer)
    viewer_page = client.get(LIST)
    refused = client.post(
        LIST, {"action": "acknowledge_selected", "_selected_action": [incident.pk]}
    )

    assert {name for name, _ in offered} >= {"acknowledge_selected", "investigate_selected"}
    assert "close_selected" not in {name for name, _ in offered}
    assert viewer_page.context["action_form"] is None
    assert refused.status_code in (200, 302)
    incident.refresh_from_db()
    assert incident.status == Status.OPEN
