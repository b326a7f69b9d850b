"""Services (components) CRUD and the policy tables through the API."""

from __future__ import annotations

import pytest

from incidents.models import (
    Integration,
    PriorityMatrixCell,
    ResponseRole,
    RoutingRule,
    Service,
    SeverityLevel,
)
from tests.factories import IncidentFactory, ServiceFactory

# --- services ------------------------------------------------------------------------------------


def test_responders_create_edit_and_list_services(api_as, technical_lead):
    client = api_as(technical_lead)
    response = client.post(
        "/api/v1/services/",
        {
            "slug": "payments",
            "name": "Payments",
            "public_name": "Payments",
            "kind": "customer_app",
            "tier": 1,
            "customer_facing": True,
            "owner": "tl",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "slug": "payments",
        "name": "Payments",
        "public_name": "Payments",
        "description": "",
        "kind": "customer_app",
        "tier": 1,
        "customer_facing": True,
        "owner": "tl",
        "is_active": True,
    }
    service = Service.objects.get(slug="payments")
    assert service.history.get().history_user == technical_lead

    response = client.patch("/api/v1/services/payments/", {"tier": 2, "owner": None}, format="json")
    assert response.status_code == 200
    assert (response.json()["tier"], response.json()["owner"]) == (2, None)
    assert service.history.latest("history_id").history_user == technical_lead

    assert [s["slug"] for s in client.get("/api/v1/services/").json()["results"]] == ["payments"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "No slug"}, "slug"),
        ({"slug": "has space", "name": "X"}, "slug"),
        ({"slug": "x", "name": "X", "tier": 9}, "tier"),
        ({"slug": "x", "name": "X", "kind": "moon"}, "kind"),
        ({"slug": "x", "name": "X", "owner": "ghost"}, "owner"),
        ({"slug": "checkout", "name": "Again"}, "slug"),
    ],
)
def test_bad_services_are_400(api_as, incident_manager, service, body, field):
    response = api_as(incident_manager).post("/api/v1/services/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]


def test_deleting_a_service_needs_the_delete_permission(api_as, incident_manager, superuser):
    ServiceFactory(slug="old")
    assert api_as(incident_manager).delete("/api/v1/services/old/").status_code == 403
    response = api_as(superuser).delete("/api/v1/services/old/")
    assert response.status_code == 204
    assert not Service.objects.filter(slug="old").exists()


def test_a_service_named_by_incidents_is_not_deleted(api_as, superuser, service):
    IncidentFactory(services=["checkout"])
    response = api_as(superuser).delete("/api/v1/services/checkout/")
    assert response.status_code == 409
    assert response.json()["code"] == "in_use"
    assert Service.objects.filter(slug="checkout").exists()
    # Deactivating is the way out.
    response = api_as(superuser).patch(
        "/api/v1/services/checkout/", {"is_active": False}, format="json"
    )
    assert response.json()["is_active"] is False


def test_a_service_an_integration_routes_to_is_not_deleted(api_as, superuser):
    ServiceFactory(slug="billing")
    integration = Integration.objects.create(name="Prometheus", kind="alertmanager")
    RoutingRule.objects.create(
        integration=integration,
        match={"team": "billing"},
        service_id=Service.objects.get(slug="billing").pk,
    )
    response = api_as(superuser).delete("/api/v1/services/billing/")
    assert response.status_code == 409, response.json()
    assert "routing rules" in response.json()["errors"]["slug"][0]
    assert Service.objects.filter(slug="billing").exists()


def test_an_owner_name_with_a_nul_byte_is_a_400_not_a_500(api_as, superuser):
    response = api_as(superuser).post(
        "/api/v1/services/",
        {
            "slug": "nul-owner",
            "name": "Nul owner",
            "public_name": "Nul owner",
            "description": "",
            "kind": "third_party",
            "tier": 3,
            "customer_facing": False,
            "owner": "ro\x00ot",
            "is_active": True,
        },
        format="json",
    )
    assert response.status_code == 400
    assert "owner" in response.json()["errors"] or "owner" in str(response.json())
    assert not Service.objects.filter(slug="nul-owner").exists()


def test_unknown_service_is_404(api_as, viewer):
    assert api_as(viewer).get("/api/v1/services/nope/").status_code == 404


# --- policy --------------------------------------------------------------------------------------


def test_policy_reads_show_the_procedure_tables(api_as, viewer):
    client = api_as(viewer)
    severities = client.get("/api/v1/policy/severities/").json()
    assert [s["level"] for s in severities] == [1, 2, 3, 4]
    sev1 = severities[0]
    assert (sev1["response_target_seconds"], sev1["resolution_target_seconds"]) == (900, 14400)
    assert sev1["notification_channels"] == ["phone", "slack", "email"]
    assert "Website completely down" in sev1["examples"]

    matrix = {
        (c["urgency"], c["impact"]): c["priority"]
        for c in client.get("/api/v1/policy/priority-matrix/").json()
    }
    assert matrix[("high", "high")] == 1
    assert matrix[("low", "low")] == 4
    assert client.get("/api/v1/policy/priority-matrix/medium/high/").json()["priority"] == 2

    roles = client.get("/api/v1/policy/roles/").json()
    assert [r["key"] for r in roles] == [
        "incident_manager",
        "technical_lead",
        "communications_lead",
        "business_liaison",
    ]
    assert roles[0]["group"] == "Incident Manager"
    assert roles[0]["primary_contact"]["email"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/policy/severities/5/",
        "/api/v1/policy/severities/one/",
        "/api/v1/policy/priority-matrix/huge/high/",
        "/api/v1/policy/roles/janitor/",
    ],
)
def test_unknown_policy_rows_are_404(api_as, viewer, path):
    assert api_as(viewer).get(path).status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/policy/severities/2/", {"response_target": "PT30M"}),
        ("/api/v1/policy/priority-matrix/high/low/", {"priority": 2}),
        ("/api/v1/policy/roles/technical_lead/", {"name": "Tech Lead"}),
    ],
)
def test_policy_writes_need_the_admin_level_permission(
    api_as, incident_manager, superuser, path, body
):
    response = api_as(incident_manager).patch(path, body, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "action_forbidden"
    assert api_as(superuser).patch(path, body, format="json").status_code == 200


def test_superuser_edits_a_severity_with_an_audited_history(api_as, superuser):
    response = api_as(superuser).patch(
        "/api/v1/policy/severities/2/",
        {"response_target": "PT30M", "notification_channels": ["slack", "email", "sms"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["response_target_seconds"] == 1800
    level = SeverityLevel.objects.get(level=2)
    assert level.notification_channels == ["slack", "email", "sms"]
    assert level.history.latest("history_id").history_user == superuser


@pytest.mark.parametrize(
    "body",
    [
        {"response_target": "PT0S"},
        {"response_target": "P400D"},
        {"response_target": "PT9H"},  # longer than Sev 2's 8 h resolution target
        {"notification_channels": []},
        {"notification_channels": ["pigeon"]},
        {"notification_channels": ["email", "email"]},
        {"name": ""},
    ],
)
def test_invalid_severity_edits_are_400(api_as, superuser, body):
    response = api_as(superuser).patch("/api/v1/policy/severities/2/", body, format="json")
    assert response.status_code == 400, response.json()
    assert SeverityLevel.objects.get(level=2).response_target.total_seconds() == 3600


def test_priority_matrix_change_applies_to_new_classifications(api_as, superuser):
    client = api_as(superuser)
    assert (
        client.patch(
            "/api/v1/policy/priority-matrix/low/low/", {"priority": 3}, format="json"
        ).status_code
        == 200
    )
    assert PriorityMatrixCell.objects.get(urgency="low", impact="low").priority == 3
    created = client.post(
        "/api/v1/incidents/",
        {"title": "X", "severity": 4, "impact": "low", "urgency": "low"},
        format="json",
    )
    assert created.json()["priority"] == 3


def test_superuser_edits_a_response_role(api_as, superuser):
    contact = ResponseRole.objects.get(key="business_liaison").primary_contact
    response = api_as(superuser).patch(
        "/api/v1/policy/roles/technical_lead/",
        {"responsibilities": ["Lead the investigation", " "], "backup_contact": contact.pk},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["responsibilities"] == ["Lead the investigation"]
    assert response.json()["backup_contact"]["id"] == contact.pk
    bad = api_as(superuser).patch(
        "/api/v1/policy/roles/technical_lead/", {"primary_contact": 10**12}, format="json"
    )
    assert bad.status_code == 400
