"""Components and component groups through the staff API: the communications lead adds and
edits them and sets a component's status with a reason (kept in its status history); bad input
is a 400 that changes nothing; a Viewer reads and gets 403 on every write."""

from __future__ import annotations

import pytest

from communications.models import Component, ComponentGroup, ComponentStatusInterval
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead_api(api_as, communications_lead):
    return api_as(communications_lead)


@pytest.fixture
def services(db):
    return [
        ServiceFactory(slug="checkout", name="Payments (internal)", public_name="Checkout"),
        ServiceFactory(slug="orders-db", name="Orders DB", public_name=""),
    ]


def test_the_lead_builds_the_page_and_sets_a_status_with_a_reason(
    lead_api, services, communications_lead
):
    group = lead_api.post("/api/v1/component-groups/", {"name": "Shop"}, format="json")
    assert group.status_code == 201, group.json()
    group_id = group.json()["id"]
    created = lead_api.post(
        "/api/v1/components/",
        {"service": "checkout", "group": group_id, "description": "Cart and payments"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["code"], body["name"], body["status"]) == ("checkout", "Checkout", "operational")
    assert body["group_name"] == "Shop"
    assert lead_api.get(f"/api/v1/component-groups/{group_id}/").json()["components"] == [
        "checkout"
    ]

    refused = lead_api.patch(
        "/api/v1/components/checkout/", {"status": "partial_outage"}, format="json"
    )
    assert refused.status_code == 400
    assert "reason" in refused.json()["errors"]
    assert Component.objects.get().status == "operational"

    changed = lead_api.patch(
        "/api/v1/components/checkout/",
        {"status": "partial_outage", "reason": "Card payments failing"},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["status"] == "partial_outage"
    latest = changed.json()["recent_intervals"][0]
    assert latest["status"] == "partial_outage"
    assert latest["reason"] == "Card payments failing (api)"
    assert latest["actor"]["username"] == communications_lead.username
    assert ComponentStatusInterval.objects.filter(ended_at=None).get().status == "partial_outage"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"service": "orders-db"}, "service"),  # no public name: the page never shows internals
        ({"service": "nope"}, "service"),
        ({"service": "checkout", "group": 999}, "group"),
        ({"service": "checkout", "status": "on_fire"}, "status"),
    ],
)
def test_bad_components_are_refused(lead_api, services, payload, field):
    response = lead_api.post("/api/v1/components/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Component.objects.exists()


def test_a_duplicate_group_name_is_refused(lead_api):
    first = lead_api.post("/api/v1/component-groups/", {"name": "Shop"}, format="json")
    assert first.status_code == 201
    response = lead_api.post("/api/v1/component-groups/", {"name": "shop"}, format="json")
    assert response.status_code == 400
    assert ComponentGroup.objects.count() == 1


def test_a_viewer_reads_and_may_not_write(api_as, viewer, lead_api, services):
    lead_api.post("/api/v1/components/", {"service": "checkout"}, format="json")
    api = api_as(viewer)
    assert api.get("/api/v1/components/").json()["results"][0]["code"] == "checkout"
    assert api.get("/api/v1/components/checkout/").status_code == 200
    patch = api.patch(
        "/api/v1/components/checkout/",
        {"status": "major_outage", "reason": "x"},
        format="json",
    )
    assert patch.status_code == 403
    assert patch.json()["code"] == "action_forbidden"
    assert api.post("/api/v1/component-groups/", {"name": "X"}, format="json").status_code == 403
    assert (
        api.post("/api/v1/components/", {"service": "checkout"}, format="json").status_code == 403
    )
    assert Component.objects.get().status == "operational"
    assert not ComponentGroup.objects.exists()


def test_unknown_components_are_404(lead_api):
    assert lead_api.get("/api/v1/components/nope/").status_code == 404
    assert lead_api.get("/api/v1/component-groups/12/").status_code == 404
    assert lead_api.get("/api/v1/component-groups/x/").status_code == 404


def test_the_component_list_takes_a_fixed_number_of_queries(
    lead_api, communications_lead, django_assert_max_num_queries
):
    for index in range(6):
        ServiceFactory(slug=f"svc-{index}", public_name=f"Service {index}")
        lead_api.post("/api/v1/components/", {"service": f"svc-{index}"}, format="json")
    with django_assert_max_num_queries(6):
        response = lead_api.get("/api/v1/components/")
    assert len(response.json()["results"]) == 6
