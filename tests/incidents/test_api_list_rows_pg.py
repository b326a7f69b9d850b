"""The incident list on PostgreSQL: its rows built as JSON by the page query are the
serializer's rows field for field, its query count does not grow with the data, and the
admin's title search is answered from the trigram index (migration 0015)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents.api import incidents as incident_views
from incidents.models import Incident, Source
from incidents.selectors import incident_search
from incidents.services import incident_role_assign
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _python_rows(client, url):
    with mock.patch.object(incident_views, "json_rows_supported", lambda: False):
        return client.get(url).json()


@pytest.fixture
def spread(incident_manager, make_user):
    ServiceFactory(slug="checkout", name="Checkout")
    ServiceFactory(slug="api", name="API")
    named = make_user("Technical Lead", username="tl", first_name="Zoë", last_name="Ångström")
    statuses = ["open", "acknowledged", "resolved", "closed", "cancelled", "monitoring"]
    for n, status in enumerate(statuses * 2):
        # Whole seconds and microseconds alike; a title with quotes, a backslash, a newline.
        moment = T0 - timedelta(hours=n, microseconds=0 if n % 2 else 123_450)
        with time_machine.travel(moment, tick=False):
            incident = IncidentFactory(
                title=f'Checkout "down" \\ {n}\nnow, 100 % – {status}',
                status=status,
                services=["checkout", "api"] if n % 2 else ["checkout"],
                affected_users=None if n % 3 else 1200,
            )
        if status not in ("closed", "cancelled"):
            for role, user in (("incident_manager", incident_manager), ("technical_lead", named)):
                if role == "incident_manager" or n % 2:
                    incident_role_assign(
                        incident=incident, role=role, user=user, actor=None, source=Source.SYSTEM
                    )
    duplicate = Incident.objects.filter(status="cancelled").first()
    Incident.objects.filter(pk=duplicate.pk).update(
        duplicate_of=Incident.objects.filter(status="open").first()
    )


@pytest.mark.parametrize(
    "query",
    [
        "",
        "status=open&status=resolved",
        "ordering=severity",
        "ordering=-priority&page_size=5",
        "search=down&breached=true",
        "service=api&ordering=created_at",
    ],
)
def test_the_rows_postgresql_builds_are_the_serializers(api_as, incident_manager, spread, query):
    client = api_as(incident_manager)
    url = f"/api/v1/incidents/?page_size=4&{query}"
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        for _ in range(3):  # first page and the next two, through the cursors
            fast = client.get(url)
            assert fast.status_code == 200
            assert fast["Content-Type"] == "application/json"
            body = fast.json()
            assert body == _python_rows(client, url)
            if not body["next"]:
                break
            url = body["next"]


def test_another_time_zone_is_served_by_the_serializer(api_as, incident_manager, spread, settings):
    settings.TIME_ZONE = "Europe/Paris"
    client = api_as(incident_manager)
    body = client.get("/api/v1/incidents/").json()
    assert body["results"][0]["detected_at"].endswith("+01:00")
    assert body == _python_rows(client, "/api/v1/incidents/")


def _seed(count: int) -> None:
    ServiceFactory(slug="checkout")
    with time_machine.travel(T0, tick=False):
        for n in range(count):
            IncidentFactory(services=["checkout"], status=["open", "investigating"][n % 2])


@pytest.mark.parametrize("count", [3, 60])
def test_the_list_query_count_does_not_grow_with_rows(
    api_as, incident_manager, count, django_assert_max_num_queries
):
    _seed(count)
    client = api_as(incident_manager)
    # Token and its user, the user's other tokens (knox), the permissions the page needs
    # (view and the actions, one query), the page: the same four whatever the number of rows.
    with django_assert_max_num_queries(4):
        response = client.get("/api/v1/incidents/?status=open&status=investigating&page_size=50")
    assert len(response.json()["results"]) == min(count, 50)


def test_a_title_word_is_searched_through_the_trigram_index(make_incident):
    for status in ("open", "closed", "cancelled"):
        make_incident(title=f"Timeouts calling payments ({status})", status=status)
    found = incident_search(queryset=Incident.objects.all(), term="timeouts")
    assert found.count() == 3
    # The paginator's count of the matches, which has to read them all.
    sql, params = found.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        # A handful of rows would be scanned whatever the index: ask whether it can serve.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "incident_title_trgm" in plan, plan
    with CaptureQueriesContext(connection) as queries:
        list(found)
    assert "UPPER(" in queries[-1]["sql"]
