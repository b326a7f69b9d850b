"""The action items API: list filters (owner id or me, status, kind, overdue, service,
incident) in a pinned number of queries, create with its refusals, change, status actions,
delete, and role permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from incidents.models import Source
from reviews.models import ActionItem, Review, ReviewStatus
from reviews.services.actions import action_item_create
from tests.factories import IncidentFactory, ServiceFactory

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
D0 = T0.date()
URL = "/api/v1/action-items/"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def owner(make_user):
    return make_user("Viewer", username="olga")


def add(incident, who, /, **kwargs):
    values = {
        "kind": "immediate_fix",
        "title": "Add an alert",
        "owner": who,
        "due_date": D0 + timedelta(days=5),
    }
    values.update(kwargs)
    return action_item_create(incident=incident, actor=None, source=Source.SYSTEM, **values)


@pytest.fixture
def items(owner, incident_manager):
    checkout = ServiceFactory(slug="checkout", name="Checkout")
    search = ServiceFactory(slug="search", name="Search")
    first = IncidentFactory(status="resolved", services=[checkout])
    second = IncidentFactory(status="resolved", services=[search, checkout])
    third = IncidentFactory(status="resolved", services=[search])
    return {
        "late": add(first, owner, title="Late", due_date=D0),
        "training": add(second, owner, title="Training", kind="training"),
        "mine_im": add(third, incident_manager, title="IM's", due_date=D0 + timedelta(days=1)),
    }


def titles(response):
    assert response.status_code == 200, response.content
    return sorted(row["title"] for row in response.json()["results"])


def test_list_filters(frozen, api_as, owner, incident_manager, items):
    frozen.move_to(T0 + timedelta(days=2))
    api = api_as(owner)
    assert titles(api.get(URL)) == ["IM's", "Late", "Training"]
    assert titles(api.get(URL, {"owner": "me"})) == ["Late", "Training"]
    assert titles(api.get(URL, {"owner": incident_manager.pk})) == ["IM's"]
    assert titles(api.get(URL, {"kind": "training"})) == ["Training"]
    assert titles(api.get(URL, {"overdue": "true"})) == ["IM's", "Late"]
    assert titles(api.get(URL, {"overdue": "false"})) == ["Training"]
    assert titles(api.get(URL, {"service": "checkout"})) == ["Late", "Training"]
    assert titles(api.get(URL, {"service": "search", "owner": "me"})) == ["Training"]
    number = items["late"].incident.number
    assert titles(api.get(URL, {"incident": number})) == ["Late"]
    assert titles(api.get(URL, {"status": "done"})) == []
    rows = api.get(URL, {"owner": "me"}).json()["results"]
    assert [row["overdue"] for row in rows] == [True, False]  # by due date
    assert rows[0]["owner"]["username"] == "olga"
    for bad in ({"owner": "you"}, {"status": "closed"}, {"overdue": "yes"}, {"kind": "x"}):
        response = api.get(URL, bad)
        assert response.status_code == 400, bad


def test_list_query_count_is_pinned(api_as, owner, items, django_assert_max_num_queries):
    api = api_as(owner)
    api.get(URL)  # warm caches
    for n in range(10):
        add(IncidentFactory(status="resolved"), owner, title=f"More {n}")
    with django_assert_max_num_queries(6):
        response = api.get(URL)
    assert len(response.json()["results"]) == 13


def test_create_and_its_refusals(api_as, technical_lead, owner):
    incident = IncidentFactory(status="resolved")
    api = api_as(technical_lead)
    body = {
        "incident": incident.number,
        "kind": "long_term",
        "title": "Split the database",
        "owner": owner.pk,
        "due_date": str(D0 + timedelta(days=30)),
        "tracker_url": "https://github.com/example/app/issues/1",
    }
    bad = [
        {"due_date": str(D0 - timedelta(days=1))},
        {"owner": 999999},
        {"title": ""},
        {"title": "x" * 201},
        {"tracker_url": "file:///etc/passwd"},
        {"incident": "INC-2026-0101-999"},
        {"kind": "other"},
    ]
    for change in bad:
        response = api.post(URL, {**body, **change}, format="json")
        assert response.status_code == 400, (change, response.content)
    cancelled = IncidentFactory(status="cancelled")
    assert api.post(URL, {**body, "incident": cancelled.number}, format="json").status_code == 400
    assert not ActionItem.objects.exists()

    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["incident"] == incident.number and data["owner"]["id"] == owner.pk
    assert data["status"] == "open" and data["overdue"] is False

    got = api.get(f"{URL}{data['id']}/")
    assert got.status_code == 200 and got.json()["title"] == "Split the database"
    assert api.get(f"{URL}999999/").status_code == 404


def test_published_review_refuses_new_items(api_as, incident_manager, owner):
    incident = IncidentFactory(status="closed")
    Review.objects.create(incident=incident, due_date=D0, status=ReviewStatus.PUBLISHED)
    body = {
        "incident": incident.number,
        "kind": "process",
        "title": "Update the runbook",
        "owner": owner.pk,
        "due_date": str(D0),
        "from_review": True,
    }
    response = api_as(incident_manager).post(URL, body, format="json")
    assert response.status_code == 409
    assert not ActionItem.objects.exists()


def test_patch_and_status_actions_and_permissions(api_as, incident_manager, owner, viewer):
    item = add(IncidentFactory(status="resolved"), owner)
    detail = f"{URL}{item.pk}/"

    # The owner may not edit the fields, only the status.
    assert api_as(owner).patch(detail, {"title": "Mine"}, format="json").status_code == 403
    im = api_as(incident_manager)
    assert im.patch(detail, {"status": "done"}, format="json").status_code == 400
    assert (
        im.patch(detail, {"due_date": str(D0 - timedelta(days=2))}, format="json").status_code
        == 400
    )
    response = im.patch(detail, {"priority": "high", "title": "Alert on errors"}, format="json")
    assert response.status_code == 200
    assert response.json()["priority"] == "high"

    assert api_as(viewer).post(f"{detail}done/").status_code == 403
    mine = api_as(owner)
    assert mine.post(f"{detail}start/").json()["status"] == "in_progress"
    assert mine.post(f"{detail}wont-do/", {}, format="json").status_code == 400
    assert ActionItem.objects.get(pk=item.pk).status == "in_progress"
    response = mine.post(f"{detail}wont-do/", {"reason": "Replaced by X-2"}, format="json")
    assert response.json()["wont_do_reason"] == "Replaced by X-2"
    assert mine.post(f"{detail}reopen/").json()["status"] == "open"
    done = mine.post(f"{detail}done/").json()
    assert done["status"] == "done" and done["completed_at"] is not None

    # Deleting: the incident manager only.
    assert api_as(owner).delete(detail).status_code == 403
    assert im.delete(detail).status_code == 204
    assert not ActionItem.objects.exists()


def test_unauthenticated_and_roleless_are_refused(client, api_as, make_user, items):
    assert client.get(URL).status_code in (401, 403)
    nobody = make_user(username="nobody")
    assert api_as(nobody).get(URL).status_code == 403
