"""``/api/v1/integrations/``: administrators provision senders by script; the key, the sender
URLs and (once) the secret come back; role groups cannot see or touch integrations. And the
admin pages: the sender URL and snippet, rotate-secret, the read-only alerts and deliveries."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from incidents.models import Integration, WebhookDelivery
from tests.incidents.detection_fixtures import (
    alertmanager_payload,
    hook_path,
    make_integration,
    post,
)

BASE = "https://vigil.example.com"


@override_settings(VIGIL_BASE_URL=BASE)
def test_admin_creates_an_alertmanager_integration_and_gets_key_urls_and_secret(
    api_as, superuser, service
):
    client = api_as(superuser)
    response = client.post(
        "/api/v1/integrations/",
        {
            "name": "Prometheus prod",
            "kind": "alertmanager",
            "service": "checkout",
            "default_severity": 2,
            "auto_resolve": True,
            "group_by": ["service"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    integration = Integration.objects.get()
    assert len(body["key"]) == 32 and body["key"] == integration.key
    assert body["secret"] == integration.secret and len(body["secret"]) >= 40
    assert body["urls"] == {"webhook_url": f"{BASE}/hooks/alertmanager/{integration.key}/"}
    assert {k: body[k] for k in ("service", "default_severity", "auto_resolve", "group_by")} == {
        "service": "checkout",
        "default_severity": 2,
        "auto_resolve": True,
        "group_by": ["service"],
    }
    assert integration.history.get().history_user == superuser
    # The history never holds the secret.
    assert not hasattr(integration.history.get(), "secret")

    # Reads say whether there is a secret, never what it is.
    listed = client.get("/api/v1/integrations/").json()
    assert [row["id"] for row in listed["results"]] == [integration.pk]
    assert "secret" not in listed["results"][0] and listed["results"][0]["has_secret"] is True

    response = client.patch(
        f"/api/v1/integrations/{integration.pk}/", {"enabled": False}, format="json"
    )
    assert response.status_code == 200 and response.json()["enabled"] is False

    old = integration.secret
    response = client.post(f"/api/v1/integrations/{integration.pk}/rotate-secret/")
    assert response.status_code == 200
    integration.refresh_from_db()
    assert response.json()["secret"] == integration.secret != old


@override_settings(VIGIL_BASE_URL=BASE)
def test_pagerduty_integration_has_events_urls_and_no_secret(api_as, superuser):
    response = api_as(superuser).post(
        "/api/v1/integrations/", {"name": "PD senders", "kind": "pagerduty"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["secret"] == "" and body["has_secret"] is False
    assert body["urls"] == {
        "events_url": f"{BASE}/hooks/pagerduty/v2/enqueue",
        "client_base_url": f"{BASE}/hooks/pagerduty",
        "events_url_alias": f"{BASE}/v2/enqueue",
    }
    response = api_as(superuser).post(f"/api/v1/integrations/{body['id']}/rotate-secret/")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "x", "kind": "opsview"}, "kind"),
        ({"name": "x", "kind": "generic", "secret": ""}, "secret"),
        ({"name": "x", "kind": "grafana", "service": "nope"}, "service"),
        ({"name": "x", "kind": "grafana", "default_severity": 7}, "default_severity"),
        ({"name": "x", "kind": "grafana", "group_by": ["bad label"]}, "group_by.0"),
        ({"kind": "grafana"}, "name"),
    ],
)
def test_invalid_input_is_a_400_and_creates_nothing(api_as, superuser, data, field):
    response = api_as(superuser).post("/api/v1/integrations/", data, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not Integration.objects.exists()


def test_kind_cannot_change(api_as, superuser):
    integration = make_integration("grafana")
    response = api_as(superuser).patch(
        f"/api/v1/integrations/{integration.pk}/", {"kind": "generic"}, format="json"
    )
    # Not an accepted field of the update: ignored by the serializer, nothing changes.
    assert response.status_code == 200
    integration.refresh_from_db()
    assert integration.kind == "grafana"


@pytest.mark.parametrize(
    "role",
    ["incident_manager", "technical_lead", "communications_lead", "business_liaison", "viewer"],
)
def test_role_groups_cannot_read_or_write_integrations(api_as, request, role):
    user = request.getfixturevalue(role)
    integration = make_integration("grafana")
    client = api_as(user)
    assert client.get("/api/v1/integrations/").status_code == 403
    assert client.get(f"/api/v1/integrations/{integration.pk}/").status_code == 403
    response = client.post("/api/v1/integrations/", {"name": "x", "kind": "grafana"}, format="json")
    assert response.status_code == 403
    assert client.delete(f"/api/v1/integrations/{integration.pk}/").status_code == 403
    assert Integration.objects.count() == 1


def test_anonymous_is_401(db):
    assert APIClient().get("/api/v1/integrations/").status_code == 401


def test_unknown_or_malformed_ids_are_404(api_as, superuser):
    client = api_as(superuser)
    for value in ("999", "abc", "0", "9" * 30):
        assert client.get(f"/api/v1/integrations/{value}/").status_code == 404


def test_delete_only_when_nothing_was_received(
    api_as, superuser, client, django_capture_on_commit_callbacks
):
    unused = make_integration("grafana")
    used = make_integration("alertmanager", secret="")
    response, _ = post(
        client,
        hook_path(used),
        alertmanager_payload(),
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 202
    api = api_as(superuser)
    assert api.delete(f"/api/v1/integrations/{unused.pk}/").status_code == 204
    response = api.delete(f"/api/v1/integrations/{used.pk}/")
    assert response.status_code == 409
    assert response.json()["code"] == "in_use"
    assert list(Integration.objects.all()) == [used]
    assert WebhookDelivery.objects.count() == 1


# --- the admin -----------------------------------------------------------------------------------


@override_settings(VIGIL_BASE_URL=BASE)
@pytest.mark.parametrize(
    "kind, expected",
    [
        (
            "alertmanager",
            ["webhook_configs:", "type: Bearer", "credentials:", "/hooks/alertmanager/"],
        ),
        ("grafana", ["X-Grafana-Alerting-Signature-Timestamp", "/hooks/grafana/"]),
        ("pagerduty", ["EventsApiV2Client", f'base_url="{BASE}/hooks/pagerduty"']),
        ("generic", ["X-Vigil-Signature: sha256=", "openssl dgst -sha256 -hmac"]),
    ],
)
def test_admin_page_shows_sender_url_and_snippet(client, superuser, kind, expected):
    integration = make_integration(kind)
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert integration.key in text
    if integration.secret:
        assert integration.secret in text
    for fragment in expected:
        assert fragment.replace('"', "&quot;") in text
    assert client.get("/admin/incidents/integration/").status_code == 200


def test_admin_rotate_secret_action(client, superuser):
    integration = make_integration("grafana")
    old = integration.secret
    client.force_login(superuser)
    chosen = {"action": "rotate_secret", "_selected_action": [integration.pk]}
    confirm = client.post("/admin/incidents/integration/", chosen)
    integration.refresh_from_db()
    assert integration.secret == old  # not before the confirmation
    assert "The old secret stops working" in confirm.content.decode()
    response = client.post("/admin/incidents/integration/", {**chosen, "post": "yes"}, follow=True)
    assert "1 integration(s) given a new secret" in response.content.decode()
    integration.refresh_from_db()
    assert integration.secret != old
    assert integration.history.latest("history_id").history_change_reason == (
        "secret rotated via admin"
    )


def test_role_groups_do_not_see_integrations_in_the_admin(client, incident_manager):
    client.force_login(incident_manager)
    assert client.get("/admin/incidents/integration/").status_code == 403
    assert client.get("/admin/incidents/alert/").status_code == 200
    assert client.get("/admin/incidents/alertrule/").status_code == 200
