"""The incident list on PostgreSQL reads the row each incident keeps (migration 0017): after every
kind of change that shows in a row, wherever it is made, the list still shows what the
serializer shows for the same incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from incidents.api import incidents as incident_views
from incidents.models import Incident, ResponseRole, RoleAssignment, Service
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
URL = "/api/v1/incidents/?page_size=100"


def _same_rows(client) -> dict:
    """The list as the stored rows give it, checked against the serializer's, by incident ID."""
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        fast = client.get(URL).json()["results"]
        with mock.patch.object(incident_views, "json_rows_supported", lambda: False):
            slow = client.get(URL).json()["results"]
    assert fast == slow
    return {row["id"]: row for row in fast}


@pytest.fixture
def world(incident_manager, make_user):
    ServiceFactory(slug="checkout", name="Checkout")
    ServiceFactory(slug="api", name="API")
    lead = make_user("Technical Lead", username="tl", first_name="Zoë", last_name="Lind")
    with time_machine.travel(T0, tick=False):
        first = IncidentFactory(title="First", status="open", services=["checkout"])
        second = IncidentFactory(title="Second", status="investigating", services=["api"])
    return {"first": first, "second": second, "lead": lead}


def test_links_and_roles_changed_through_the_api(api_as, incident_manager, world):
    client = api_as(incident_manager)
    number = world["first"].number
    edited = client.patch(
        f"/api/v1/incidents/{number}/", {"services": ["api", "checkout"]}, format="json"
    )
    assert edited.status_code == 200, edited.content
    assigned = client.patch(
        f"/api/v1/incidents/{number}/roles/",
        {"incident_manager": incident_manager.username, "technical_lead": "tl"},
        format="json",
    )
    assert assigned.status_code == 200, assigned.content
    rows = _same_rows(client)
    assert rows[number]["services"] == ["api", "checkout"]  # ordered by name
    assert rows[number]["roles"]["technical_lead"]["name"] == "Zoë Lind"

    # Another holder, then the role given up; a service taken off.
    client.patch(
        f"/api/v1/incidents/{number}/roles/",
        {"technical_lead": incident_manager.username},
        format="json",
    )
    assert _same_rows(client)[number]["roles"]["technical_lead"]["username"] == (
        incident_manager.username
    )
    client.patch(f"/api/v1/incidents/{number}/roles/", {"technical_lead": None}, format="json")
    client.patch(f"/api/v1/incidents/{number}/", {"services": ["api"]}, format="json")
    rows = _same_rows(client)
    assert "technical_lead" not in rows[number]["roles"]
    assert rows[number]["services"] == ["api"]


def test_renames_elsewhere_show_in_every_row_concerned(api_as, incident_manager, world):
    client = api_as(incident_manager)
    first, second = world["first"].number, world["second"].number
    client.patch(f"/api/v1/incidents/{first}/roles/", {"technical_lead": "tl"}, format="json")
    client.patch(f"/api/v1/incidents/{second}/roles/", {"technical_lead": "tl"}, format="json")

    # A user's name, as the admin's user form saves it (every column written).
    lead = get_user_model().objects.get(username="tl")
    lead.first_name, lead.last_name = "Zoé", "Lindqvist"
    lead.save()
    rows = _same_rows(client)
    assert {rows[n]["roles"]["technical_lead"]["name"] for n in (first, second)} == {
        "Zoé Lindqvist"
    }

    # A service's slug, and a name that puts it first.
    Incident.objects.get(number=first).services.add(Service.objects.get(slug="api"))
    checkout = Service.objects.get(slug="checkout")
    checkout.slug, checkout.name = "shop", "AAA Shop"
    checkout.save()
    assert _same_rows(client)[first]["services"] == ["shop", "api"]

    # A role's key, and its place among the roles.
    role = ResponseRole.objects.get(key="technical_lead")
    role.key, role.position = "tech_lead", 0
    role.save()
    rows = _same_rows(client)
    assert next(iter(rows[first]["roles"])) == "tech_lead"
    assert rows[second]["roles"]["tech_lead"]["username"] == "tl"


def test_writes_that_bypass_the_models_keep_the_rows_right(api_as, incident_manager, world):
    client = api_as(incident_manager)
    first, second = world["first"], world["second"]
    # QuerySet.update(): no save(), no signal.
    Incident.objects.filter(pk=first.pk).update(title='Now "quoted" \\ and\nsplit')
    Incident.objects.filter(pk=second.pk).update(duplicate_of=first, status="cancelled")
    # Bulk-created links and assignments.
    checkout = Service.objects.get(slug="checkout")
    Incident.services.through.objects.bulk_create(
        [Incident.services.through(incident_id=second.pk, service_id=checkout.pk)]
    )
    lead_role = ResponseRole.objects.get(key="technical_lead")
    RoleAssignment.objects.bulk_create(
        [RoleAssignment(incident=first, role=lead_role, user=world["lead"])]
    )
    rows = _same_rows(client)
    assert rows[first.number]["title"] == 'Now "quoted" \\ and\nsplit'
    assert rows[second.number]["duplicate_of"] == first.number
    assert rows[first.number]["roles"]["technical_lead"]["username"] == "tl"
    assert rows[second.number]["services"] == ["api", "checkout"]

    # A service deleted takes its links with it; the rows follow.
    Service.objects.filter(slug="api").delete()
    assert _same_rows(client)[second.number]["services"] == ["checkout"]


def test_a_change_rolled_back_leaves_the_stored_row_as_it_was(api_as, incident_manager, world):
    client = api_as(incident_manager)
    before = _same_rows(client)
    with pytest.raises(RuntimeError), transaction.atomic():
        Incident.objects.filter(pk=world["first"].pk).update(title="Never")
        world["first"].services.clear()
        raise RuntimeError
    assert _same_rows(client) == before


def test_a_row_marked_stale_is_written_again_at_once(world):
    """How the migration fills the incidents already stored, and how changes elsewhere mark
    theirs: ``SET api_head = NULL``, which the incident's trigger writes again."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE incidents_incident SET api_head = NULL, api_roles = NULL")
        cursor.execute(
            "SELECT count(*) FROM incidents_incident WHERE api_head IS NULL OR api_roles IS NULL"
        )
        assert cursor.fetchone()[0] == 0
