"""The API lists of an incident's notifications and escalation events."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from escalation.services import escalation_sweep
from incidents.models import Incident, Source
from incidents.services import incident_create
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import T0
from tests.events import followed

reachable_policy = escalation_fixtures.reachable_policy

pytestmark = pytest.mark.django_db

# The incident is paged when its events are followed, after the creating transaction commits.
incident_create = followed(incident_create)


@pytest.fixture
def api(viewer) -> APIClient:
    client = APIClient()
    client.force_authenticate(viewer)
    return client


@pytest.fixture
def escalated(reachable_policy) -> Incident:
    """A Sev 1 incident five hours in: paged, ack timeout and all four matrix steps fired."""
    with time_machine.travel(T0, tick=False) as clock:
        incident = incident_create(
            actor=None, source=Source.SYSTEM, severity=1, title="Checkout is down"
        )
        clock.move_to(T0 + timedelta(hours=5))
        escalation_sweep()
    return incident


def notifications_url(number: str) -> str:
    return f"/api/v1/incidents/{number}/notifications/"


def escalations_url(number: str) -> str:
    return f"/api/v1/incidents/{number}/escalations/"


def test_notifications_are_listed_newest_first_with_their_delivery_state(api, escalated):
    response = api.get(notifications_url(escalated.number), {"page_size": 200})

    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == escalated.notifications.count() == 9 + 6 + 12
    assert set(results[0]) == {
        "id",
        "channel",
        "recipient",
        "contact",
        "reason",
        "template",
        "subject",
        "status",
        "attempts",
        "last_error",
        "provider_message_id",
        "idempotency_key",
        "created_at",
        "next_attempt_at",
        "sent_at",
        "failed_at",
    }
    ids = [row["id"] for row in results]
    created = [row["created_at"] for row in results]
    assert created == sorted(created, reverse=True)
    assert len(set(ids)) == len(ids)
    first = next(r for r in results if r["idempotency_key"].endswith(":email"))
    assert first["status"] == "pending" and first["attempts"] == 0 and first["last_error"] == ""
    assert first["contact"]
    assert {r["reason"] for r in results} >= {
        "Sev 1 incident logged",
        "Escalated to Board (Sev 1, 4 h elapsed)",
    }


def test_escalation_events_are_listed_in_due_order(api, escalated):
    response = api.get(escalations_url(escalated.number))

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["step"], r["target"], r["elapsed_seconds"], r["caught_up"]) for r in rows] == [
        ("ack-timeout", "Backups of Incident Manager and Technical Lead", 900, True),
        ("sev1-0:30:00", "IT Manager", 1800, True),
        ("sev1-1:00:00", "CTO", 3600, True),
        ("sev1-2:00:00", "CEO", 7200, True),
        ("sev1-4:00:00", "Board", 14400, True),
    ]
    assert rows[1]["due_at"].startswith("2026-03-02T09:30:00")
    assert rows[1]["fired_at"].startswith("2026-03-02T14:00:00")
    assert rows[1]["severity"] == 1


def test_lists_are_cursor_paginated(api, escalated):
    seen: list[int] = []
    url = notifications_url(escalated.number) + "?page_size=10"
    while url:
        body = api.get(url).json()
        assert len(body["results"]) <= 10
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(escalated.notifications.values_list("pk", flat=True))

    first = api.get(escalations_url(escalated.number), {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    assert [r["step"] for r in first["results"] + second["results"]][:4] == [
        "ack-timeout",
        "sev1-0:30:00",
        "sev1-1:00:00",
        "sev1-2:00:00",
    ]


def test_an_unknown_incident_is_404_with_the_error_shape(api, db):
    for url in (
        notifications_url("INC-2026-0101-999"),
        escalations_url("nope"),
        notifications_url("INC%00"),
        escalations_url("x" * 300),
    ):
        response = api.get(url)
        assert response.status_code == 404
        assert response.json()["status"] == 404 and response.json()["code"] == "not_found"


def test_a_forged_cursor_is_400(api, escalated):
    response = api.get(notifications_url(escalated.number), {"cursor": "bogus"})
    assert response.status_code == 400


def test_anonymous_callers_are_refused(escalated):
    response = APIClient().get(notifications_url(escalated.number))
    assert response.status_code == 401
    assert APIClient().get(escalations_url(escalated.number)).status_code == 401


def test_users_who_cannot_view_incidents_are_refused(escalated, make_user):
    nobody = make_user(username="outsider")
    client = APIClient()
    client.force_authenticate(nobody)
    for url in (notifications_url(escalated.number), escalations_url(escalated.number)):
        response = client.get(url)
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"


def test_lists_are_read_only(api, escalated):
    assert api.post(notifications_url(escalated.number), {}).status_code == 405
    assert api.delete(escalations_url(escalated.number)).status_code == 405


@pytest.mark.parametrize("url", [notifications_url, escalations_url])
def test_query_count_does_not_grow_with_the_page(api, reachable_policy, url):
    with time_machine.travel(T0, tick=False) as clock:
        small = incident_create(actor=None, source=Source.SYSTEM, severity=4, title="Small")
        large = incident_create(actor=None, source=Source.SYSTEM, severity=1, title="Large")
        clock.move_to(T0 + timedelta(hours=5))
        escalation_sweep()

    api.get(url(small.number))  # the user's permissions are cached after the first request
    counts = []
    for incident in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert api.get(url(incident.number), {"page_size": 200}).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] == 2  # the incident, the page
