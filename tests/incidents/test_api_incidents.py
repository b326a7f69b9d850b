"""Incident list, create, read and edit through the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents.models import Incident, Kind, Source
from incidents.serializers import IncidentSerializer
from incidents.services import incident_role_assign
from tests.factories import IncidentFactory, ServiceFactory
from tests.scoped_rows import scoped_rows

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def im_api(api_as, incident_manager):
    return api_as(incident_manager)


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


# --- create ------------------------------------------------------------------------------------


def test_create_logs_the_incident_like_the_admin(im_api, incident_manager, service):
    with time_machine.travel(T0, tick=False):
        response = im_api.post(
            "/api/v1/incidents/",
            {
                "title": "Checkout down",
                "severity": 1,
                "impact": "high",
                "urgency": "high",
                "summary": "Payments fail.",
                "detection_source": "customer_report",
                "services": ["checkout"],
                "affected_users": 1200,
                "impact_started_at": "2026-03-02T08:50:00Z",
                "roles": {"incident_manager": "im"},
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"] == "INC-2026-0302-001"
    assert body["priority"] == 1
    assert body["status"] == "open"
    assert body["report_status"] == "Open"
    assert body["services"] == ["checkout"]
    assert body["customer_facing"] is True  # from the customer-facing service
    assert body["detected_at"] == "2026-03-02T09:00:00Z"
    assert body["sla"] == {
        "response_due": "2026-03-02T09:15:00Z",
        "resolution_due": "2026-03-02T13:00:00Z",
        "response_breached": False,
        "resolution_breached": False,
    }
    assert body["roles"]["incident_manager"]["username"] == "im"
    assert body["url"].endswith(f"/admin/incidents/incident/{Incident.objects.get().pk}/change/")
    assert "acknowledge" in body["actions"]

    incident = Incident.objects.get(number=body["id"])
    created = incident.timeline.get(kind=Kind.CREATED)
    assert (created.source, created.actor) == (Source.API, incident_manager)
    assert incident.history.earliest("history_id").history_user == incident_manager
    assert incident.created_by == incident_manager


def test_representation_builds_exactly_the_declared_fields(im_api, incident):
    body = im_api.get(f"/api/v1/incidents/{incident.number}/").json()
    assert set(body) == set(IncidentSerializer().fields)
    assert set(body["sla"]) == set(IncidentSerializer().fields["sla"].fields)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"severity": 1}, "title"),
        ({"title": "X"}, "severity"),
        ({"title": "X", "severity": 9}, "severity"),
        ({"title": "X", "severity": "high"}, "severity"),
        ({"title": "X", "severity": 1, "impact": "huge"}, "impact"),
        ({"title": "X", "severity": 1, "services": ["nope"]}, "services"),
        ({"title": "X", "severity": 1, "services": "checkout"}, "services"),
        ({"title": "X", "severity": 1, "affected_users": -1}, "affected_users"),
        ({"title": "X", "severity": 1, "affected_users": 2**40}, "affected_users"),
        ({"title": "X", "severity": 1, "detected_at": "yesterday"}, "detected_at"),
        ({"title": "X", "severity": 1, "detected_at": "2999-01-01T00:00:00Z"}, "detected_at"),
        ({"title": "X", "severity": 1, "roles": {"janitor": "im"}}, "roles.janitor"),
        ({"title": "X", "severity": 1, "roles": {"incident_manager": "ghost"}}, "roles"),
        ({"title": "X\x00", "severity": 1}, "title"),
        ({"title": "\ud800", "severity": 1}, "title"),
    ],
)
def test_create_rejects_bad_input_with_400_naming_the_field(im_api, service, payload, field):
    # json.dumps escapes non-ASCII, so lone surrogates travel as JSON allows (\\ud800).
    response = im_api.post(
        "/api/v1/incidents/", json.dumps(payload), content_type="application/json"
    )
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] in ("invalid", "invalid_input")
    assert any(name.startswith(field) for name in body["errors"]), body
    assert not Incident.objects.exists()


def test_create_needs_the_add_permission(api_as, communications_lead):
    # Communications Leads edit incidents but do not log them.
    response = api_as(communications_lead).post(
        "/api/v1/incidents/", {"title": "X", "severity": 2}, format="json"
    )
    assert response.status_code == 403
    assert not Incident.objects.exists()


def test_create_with_roles_needs_the_assign_permission_and_changes_nothing(api_as, technical_lead):
    response = api_as(technical_lead).post(
        "/api/v1/incidents/",
        {"title": "X", "severity": 2, "roles": {"technical_lead": "tl"}},
        format="json",
    )
    assert response.status_code == 403
    assert not Incident.objects.exists()


# --- read ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["INC-2026-0101-999", "nope", "INC-2026-0101-001%00"])
def test_unknown_incident_is_a_json_404(im_api, number):
    response = im_api.get(f"/api/v1/incidents/{number}/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_detail_shows_duplicate_and_roles(im_api, incident_manager):
    original = IncidentFactory()
    duplicate = IncidentFactory()
    im_api.post(
        f"/api/v1/incidents/{duplicate.number}/cancel/",
        {"duplicate_of": original.number},
        format="json",
    )
    incident_role_assign(
        incident=original, role="technical_lead", user=incident_manager, actor=None, source="system"
    )
    assert im_api.get(f"/api/v1/incidents/{duplicate.number}/").json()["duplicate_of"] == (
        original.number
    )
    listed = {row["id"]: row for row in im_api.get("/api/v1/incidents/").json()["results"]}
    assert listed[duplicate.number]["duplicate_of"] == original.number
    assert listed[original.number]["roles"]["technical_lead"]["username"] == "im"


# --- list: filters, search, ordering, pagination ---------------------------------------------


@pytest.fixture(scope="class")
def spread_rows(django_db_setup, django_db_blocker):
    """Made once for the tests of TestListOfTheSpread, which only read them (and gone after
    them, so the module's other tests start from an empty list)."""
    yield from scoped_rows(django_db_blocker, _make_spread)


@pytest.fixture
def spread(db, spread_rows):
    """Incidents on three days, several statuses, severities, services: {key: number}."""
    return dict(spread_rows)


def _make_spread() -> dict[str, str]:
    ServiceFactory(slug="checkout", customer_facing=True)
    ServiceFactory(slug="search")
    made = {}
    with time_machine.travel(T0, tick=False):
        made["a"] = IncidentFactory(title="Checkout errors", severity=1, services=["checkout"])
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        made["b"] = IncidentFactory(
            title="Search slow", severity=3, status="investigating", services=["search"]
        )
        made["c"] = IncidentFactory(
            title="Login fails", severity=2, status="resolved", impact="high", urgency="high"
        )
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        made["d"] = IncidentFactory(title="Typo in footer", severity=4, status="closed")
    return {key: incident.number for key, incident in made.items()}


class TestListOfTheSpread:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", "dcba"),
            ("status=open", "a"),
            ("status=open&status=investigating", "ba"),
            ("severity=1&severity=4", "da"),
            ("priority=1", "c"),
            ("service=checkout", "a"),
            ("service=unknown", ""),
            ("customer_facing=true", "a"),
            ("customer_facing=false", "dcb"),
            ("search=slow", "b"),
            ("search=0303", "cb"),
            ("detected_after=2026-03-03T00:00:00Z", "dcb"),
            ("detected_before=2026-03-02T12:00:00%2B00:00", "a"),
            ("created_after=2026-03-03T00:00:00Z&created_before=2026-03-03T23:59:59Z", "cb"),
            ("ordering=severity", "acbd"),
            ("ordering=-priority", "dbac"),
            ("ordering=detected_at", "abcd"),
        ],
    )
    def test_list_filters_search_and_ordering(self, im_api, spread, query, expected):
        with time_machine.travel(T0 + timedelta(days=2, hours=1), tick=False):
            response = im_api.get(f"/api/v1/incidents/?{query}")
        got = _ids(response)
        if "ordering" in query and "priority" in query:
            # Ties keep the tie-breaker's order; only the priorities must be non-increasing.
            priorities = [row["priority"] for row in response.json()["results"]]
            assert priorities == sorted(priorities, reverse=True)
            assert set(got) == {spread[key] for key in expected}
        else:
            assert got == [spread[key] for key in expected]

    def test_breached_filter_follows_the_sla_clocks(self, im_api, spread):
        # Two hours after the last one was logged: "a" (Sev 1, 15 min) was never acknowledged.
        with time_machine.travel(T0 + timedelta(days=2, hours=2), tick=False):
            breached = set(_ids(im_api.get("/api/v1/incidents/?breached=true")))
            fine = set(_ids(im_api.get("/api/v1/incidents/?breached=false")))
        assert spread["a"] in breached
        assert spread["d"] in fine
        assert breached | fine == set(spread.values())
        assert not breached & fine

    @pytest.mark.parametrize(
        "query",
        [
            "status=burning",
            "severity=7",
            "detected_after=tomorrow",
            "detected_after=0001-01-01T00:00:00%2B05:00",
            "cursor=not-base64!",
            "cursor=cD0yMDI2LTAzLTAyIGp1bms%3D",  # p=2026-03-02 junk
        ],
    )
    def test_bad_query_parameters_are_400(self, im_api, spread, query):
        response = im_api.get(f"/api/v1/incidents/?{query}")
        assert response.status_code == 400, response.json()
        assert response.json()["status"] == 400


def test_cursor_pages_cover_everything_once_even_with_inserts(im_api, db):
    made = []
    for minute in range(7):
        with time_machine.travel(T0 + timedelta(minutes=minute), tick=False):
            made.append(IncidentFactory().number)
    newest_first = made[::-1]
    pages: list[list[str]] = []
    url = "/api/v1/incidents/?page_size=3"
    while url:
        response = im_api.get(url)
        pages.append(_ids(response))
        url = response.json()["next"]
        if len(pages) == 1:
            # A new incident arriving mid-walk must not shift the pages still to come.
            with time_machine.travel(T0 + timedelta(hours=1), tick=False):
                IncidentFactory()
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:]]
    assert _ids(im_api.get(response.json()["previous"])) == newest_first[3:6]


def test_list_query_count_does_not_grow_with_page_size(
    api_as, incident_manager, django_assert_max_num_queries
):
    checkout = ServiceFactory(slug="checkout")
    ServiceFactory(slug="search")
    with time_machine.travel(T0, tick=False):
        for n in range(100):
            # Roles are assigned as the incident is logged: a cancelled one takes none.
            IncidentFactory(
                services=["checkout", "search"] if n % 2 else [checkout.slug],
                status=["open", "investigating", "resolved", "cancelled"][n % 4],
                roles={"incident_manager": incident_manager} if n % 3 == 0 else {},
            )
    client = api_as(incident_manager)
    counts = {}
    for size in (10, 100):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/api/v1/incidents/?page_size={size}")
        assert len(response.json()["results"]) == size
        counts[size] = len(queries)
    assert counts[10] == counts[100], counts
    with django_assert_max_num_queries(8):
        client.get("/api/v1/incidents/?page_size=100&status=open&status=resolved")


# --- edit ----------------------------------------------------------------------------------------


def test_patch_edits_details_with_one_timeline_entry_and_history(
    im_api, incident_manager, incident
):
    ServiceFactory(slug="search")
    response = im_api.patch(
        f"/api/v1/incidents/{incident.number}/",
        {
            "title": "Checkout 500s",
            "impact": "high",
            "urgency": "high",
            "services": ["search"],
            # P1 on a Sev 3 incident is two steps from its usual P3: confirmed with a reason.
            "priority_reason": "Checkout is revenue-critical.",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["title"], body["priority"], body["services"]) == ("Checkout 500s", 1, ["search"])
    kinds = list(incident.timeline.filter(source=Source.API).values_list("kind", flat=True))
    assert kinds == [Kind.UPDATE, Kind.PRIORITY]
    latest = incident.history.latest("history_id")
    assert latest.history_user == incident_manager
    assert latest.title == "Checkout 500s"


def test_patch_severity_goes_through_the_severity_service(im_api, incident_manager):
    with time_machine.travel(T0, tick=False):
        incident = IncidentFactory(severity=3)
        response = im_api.patch(
            f"/api/v1/incidents/{incident.number}/",
            {"severity": 1, "severity_reason": "Payments affected"},
            format="json",
        )
    assert response.status_code == 200, response.json()
    assert response.json()["severity"] == 1
    assert response.json()["sla"]["response_due"] == "2026-03-02T09:15:00Z"
    entry = incident.timeline.get(kind=Kind.SEVERITY)
    assert (entry.source, entry.actor, entry.data["from"], entry.data["to"]) == (
        Source.API,
        incident_manager,
        3,
        1,
    )
    assert "Payments affected" in entry.message


def test_patch_is_all_or_nothing(im_api, incident):
    # The title is valid, the severity change is refused: neither applies.
    closed = IncidentFactory(status="closed")
    response = im_api.patch(
        f"/api/v1/incidents/{closed.number}/", {"title": "New", "severity": 1}, format="json"
    )
    assert response.status_code == 400
    closed.refresh_from_db()
    assert closed.title != "New"


def test_patch_with_nothing_new_changes_nothing(im_api, incident):
    before = incident.timeline.count()
    response = im_api.patch(
        f"/api/v1/incidents/{incident.number}/", {"title": incident.title}, format="json"
    )
    assert response.status_code == 200
    assert incident.timeline.count() == before


@pytest.mark.parametrize(
    "field", ["status", "priority", "id", "resolved_at", "sla", "roles", "duplicate_of"]
)
def test_patch_refuses_read_only_fields(im_api, incident, field):
    response = im_api.patch(
        f"/api/v1/incidents/{incident.number}/", {field: "closed"}, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()["errors"]
    incident.refresh_from_db()
    assert incident.status == "open"


def test_patch_needs_the_change_permissions(api_as, communications_lead, incident):
    client = api_as(communications_lead)
    # Communications Leads edit details, but not the severity.
    assert (
        client.patch(
            f"/api/v1/incidents/{incident.number}/", {"summary": "Update"}, format="json"
        ).status_code
        == 200
    )
    response = client.patch(f"/api/v1/incidents/{incident.number}/", {"severity": 1}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "action_forbidden"
