"""The incident list's plain path on PostgreSQL (``IncidentListView.json_plain_page``): a
request with only choice filters (``status``, ``severity``, ``priority``), a cursor and a page
size is answered without the filter form or a queryset. Its pages, links and errors are those
of the FilterSet's path and of the serializer's, and it costs the same four queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents.api import incidents as incident_views
from incidents.api.incidents import IncidentListView
from incidents.models import Source
from incidents.services import incident_role_assign
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)


def _through_the_filterset(client, url):
    with mock.patch.object(incident_views, "choice_filters", return_value=None):
        return client.get(url)


def _through_the_serializer(client, url):
    with mock.patch.object(incident_views, "json_rows_supported", lambda: False):
        return client.get(url)


def _plain(client, url):
    # The FilterSet's path must not be taken.
    with mock.patch.object(IncidentListView, "json_page", side_effect=AssertionError(url)):
        return client.get(url)


@pytest.fixture
def spread(incident_manager, make_user):
    """Fourteen incidents over a few instants, several detected at the same one (their cursors
    carry offsets), whole seconds and microseconds, all statuses, severities and roles."""
    ServiceFactory(slug="checkout", name="Checkout")
    ServiceFactory(slug="api", name="API")
    lead = make_user("Technical Lead", username="tl", first_name="Zoë", last_name="Ångström")
    statuses = ["open", "investigating", "resolved", "open", "closed", "cancelled", "monitoring"]
    minutes = [0, 0, 0, 0, 7, 7, 20, 31, 31, 31, 45, 60, 60, 75]
    for n, minute in enumerate(minutes):
        moment = T0 + timedelta(minutes=minute, microseconds=0 if minute % 2 else 120_000)
        status = statuses[n % len(statuses)]
        with time_machine.travel(moment, tick=False):
            incident = IncidentFactory(
                title=f'Checkout "down" {n}',
                status=status,
                severity=n % 4 + 1,
                impact=["low", "medium", "high"][n % 3],
                urgency=["high", "medium", "low"][n % 2],
                services=["checkout", "api"] if n % 2 else ["checkout"],
            )
        if status not in ("closed", "cancelled"):
            incident_role_assign(
                incident=incident,
                role="incident_manager",
                user=incident_manager,
                actor=None,
                source=Source.SYSTEM,
            )
            if n % 3 == 0:
                incident_role_assign(
                    incident=incident,
                    role="technical_lead",
                    user=lead,
                    actor=None,
                    source=Source.SYSTEM,
                )


QUERIES = [
    "",
    "status=open",
    "status=open&status=investigating&status=open",
    "status=open&status=monitoring&status=closed&severity=1&severity=3&severity=4",
    "priority=1&priority=2&priority=3",
    "severity=2&priority=4",
    "status=cancelled&status=resolved",
    "status=open&cursor=bz01",  # o=5: an offset without a position
    "cursor=bz05OTk5",  # o=9999, cut to 1000: nothing left
]


@pytest.mark.parametrize("size", ["2", "3", "50", "abc", "500"])  # abc: ignored, 500: cut
@pytest.mark.parametrize("query", QUERIES)
def test_the_plain_path_pages_as_the_filterset_and_the_serializer(
    api_as, incident_manager, spread, query, size
):
    client = api_as(incident_manager)
    url = f"/api/v1/incidents/?{query}&page_size={size}"
    pages = 0
    with time_machine.travel(NOW, tick=False):
        while url:
            plain = _plain(client, url)
            assert plain.status_code == 200, plain.content
            assert plain["Content-Type"] == "application/json"
            body = plain.json()
            assert body == _through_the_filterset(client, url).json(), url
            assert body == _through_the_serializer(client, url).json(), url
            if body["previous"]:  # a reverse cursor, with its offset
                back = _plain(client, body["previous"]).json()
                assert back == _through_the_filterset(client, body["previous"]).json()
            url = body["next"]
            pages += 1
            assert pages <= 15
    assert pages >= 1


def test_a_walk_back_from_the_last_page_meets_every_incident_once(api_as, incident_manager, spread):
    client = api_as(incident_manager)
    url = "/api/v1/incidents/?status=open&status=investigating&status=monitoring&page_size=2"
    forward = []
    with time_machine.travel(NOW, tick=False):
        while True:
            body = _plain(client, url).json()
            forward.append([row["id"] for row in body["results"]])
            if not body["next"]:
                break
            url = body["next"]
        backward = []
        url = body["previous"]
        while url:
            body = _plain(client, url).json()
            backward.append([row["id"] for row in body["results"]])
            url = body["previous"]
    seen = [number for page in forward for number in page]
    assert len(seen) == len(set(seen)) == 8
    assert [n for page in reversed(backward) for n in page] == seen[: -len(forward[-1])]


@pytest.mark.parametrize(
    "query",
    [
        "status=burning",
        "status=",
        "severity=7",
        "priority=0",
        "cursor=not-base64!",
        "cursor=cD0yMDI2LTAzLTAyIGp1bms%3D",  # p=2026-03-02 junk
        "status=open&cursor=cD0yMDI2LTAzLTAyIGp1bms%3D",
    ],
)
def test_bad_parameters_get_the_same_400(api_as, incident_manager, spread, query):
    client = api_as(incident_manager)
    url = f"/api/v1/incidents/?{query}"
    response = client.get(url)
    assert response.status_code == 400, response.content
    assert response.json() == _through_the_filterset(client, url).json()
    assert response.json() == _through_the_serializer(client, url).json()


@pytest.mark.parametrize("cursor_page", [False, True])
def test_a_plain_page_costs_four_queries(
    api_as, incident_manager, spread, cursor_page, django_assert_num_queries
):
    client = api_as(incident_manager)
    url = "/api/v1/incidents/?status=open&status=investigating&page_size=2"
    if cursor_page:
        url = _plain(client, url).json()["next"]
    # Token and its user, the user's other tokens (knox), the permissions (view and actions,
    # one query), the page with its services, roles and duplicate (one statement).
    with CaptureQueriesContext(connection) as queries, django_assert_num_queries(4):
        response = _plain(client, url)
    assert response.status_code == 200
    assert 'FROM "incidents_incident" i' in queries[-1]["sql"]


@pytest.mark.parametrize("group", ["Viewer", "Communications Lead", "Technical Lead"])
def test_each_role_sees_its_own_actions_on_the_plain_path(api_as, make_user, spread, group):
    # The actions are kept per status and per answer to the action permissions: a user with
    # fewer permissions, after one with more, still sees only theirs.
    url = "/api/v1/incidents/?status=open&status=investigating&status=monitoring"
    with time_machine.travel(NOW, tick=False):
        for user in (make_user("Incident Manager", username="first"), make_user(group)):
            client = api_as(user)
            plain = _plain(client, url).json()
            assert plain == _through_the_serializer(client, url).json()
    if group == "Viewer":
        assert all(row["actions"] == [] for row in plain["results"])
