"""New Relic workflow webhooks through /hooks/newrelic/<key>/, the secret in the X-Vigil-Token
custom header of the webhook destination.

The payloads are the webhook destination's default template filled in (the template's keys as
New Relic's workflow documentation and its default webhook template give them: "id" from
issueId, "issueUrl" from issuePageUrl, "state" CREATED/ACTIVATED/ACKNOWLEDGED/CLOSED,
"priority" CRITICAL/HIGH/MEDIUM/LOW, "createdAt"/"updatedAt" in epoch milliseconds; the same
keys as the filled-in default template in zulip/zulip's New Relic fixtures,
zerver/webhooks/newrelic/fixtures/incident_activated_new_default_payload.json). The test
notification is the template filled with New Relic's sample issue, as its payload preview and
"Send test notification" show it (quoted in zulip/zulip issue #22338).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from django.test import override_settings

from incidents.models import Alert, Incident
from tests.incidents.detection_fixtures import (
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    nothing_written,
    payload,
    post,
    process_pending,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

CREATED = datetime(2026, 11, 27, 9, 38, 12, tzinfo=UTC)  # createdAt 1795772292000
CLOSED_MS = 1795772670000  # 09:44:30
ISSUE = "5f0c7a43-7b36-4f3e-9a7b-2a4de1c8e912"


def activated() -> dict:
    return payload("newrelic-workflow-webhook-activated.json")


def in_state(state: str, **changes) -> dict:
    body = copy.deepcopy(activated())
    body["state"] = state
    body.update(changes)
    return body


@pytest.fixture
def integration(service):
    return make_integration("newrelic", service=service, auto_resolve=True, default_severity=4)


def send(client, capture, integration, body):
    headers = {integration.auth_header: integration.secret}
    return post(client, hook_path(integration), body, capture=capture, **headers)


def test_activated_opens_acknowledged_repeats_closed_resolves(
    client, django_capture_on_commit_callbacks, integration
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, activated())
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    process_pending()

    alert = Alert.objects.get()
    incident = Incident.objects.get()
    assert incident.title == (
        "checkout-api query result is > 5.0 for 5 minutes on 'Checkout error rate'"
    )
    assert incident.severity_id == 2  # HIGH
    assert incident.impact_started_at == CREATED
    assert alert.fingerprint == ISSUE
    assert alert.annotations["url"] == (
        f"https://radar-api.service.newrelic.com/accounts/4420147/issues/{ISSUE}?notifier=WEBHOOK"
    )
    assert {k: alert.labels[k] for k in ("priority", "entity", "policy", "alertname")} == {
        "priority": "HIGH",
        "entity": "checkout-api",
        "policy": "Golden Signals",
        "alertname": "Checkout error rate",
    }
    assert alert.labels["account"] == "4420147"

    # Acknowledged in New Relic: the same issue again, counted on its alert.
    send(client, django_capture_on_commit_callbacks, integration, in_state("ACKNOWLEDGED"))
    process_pending()
    alert.refresh_from_db()
    assert (alert.count, alert.status, Incident.objects.count()) == (2, "firing", 1)

    closed = in_state("CLOSED", trigger="INCIDENT_CLOSED", updatedAt=CLOSED_MS)
    send(client, django_capture_on_commit_callbacks, integration, closed)
    process_pending()
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.ends_at == datetime(2026, 11, 27, 9, 44, 30, tzinfo=UTC)
    assert incident.status == "monitoring"


def test_an_issue_closed_before_vigil_saw_it_is_recorded_without_an_incident(
    client, django_capture_on_commit_callbacks, integration
):
    send(client, django_capture_on_commit_callbacks, integration, in_state("CLOSED"))
    process_pending()
    assert Alert.objects.get().status == "resolved"
    assert not Incident.objects.exists()


@pytest.mark.parametrize(
    "priority, severity",
    [("CRITICAL", 1), ("HIGH", 2), ("MEDIUM", 3), ("LOW", 4), ("critical", 1), (None, 3)],
)
def test_priority_gives_the_severity(
    client, django_capture_on_commit_callbacks, service, priority, severity
):
    # No priority: the integration's default severity (Sev 3 here).
    integration = make_integration("newrelic", service=service, default_severity=3)
    send(
        client,
        django_capture_on_commit_callbacks,
        integration,
        in_state("CREATED", priority=priority),
    )
    process_pending()
    assert Incident.objects.get().severity_id == severity


def test_send_test_notification_is_answered_and_stores_nothing(
    client, django_capture_on_commit_callbacks, integration, caplog
):
    body = payload("newrelic-workflow-webhook-test-notification.json")
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"
    assert "test notification" in response.json()["detail"]
    assert callbacks == [] and nothing_written()
    assert "newrelic test message" in caplog.text


@pytest.mark.parametrize(
    "change, field",
    [
        (None, "non_field_errors"),
        ({"id": None}, "id"),
        ({"id": "  "}, "id"),
        ({"id": "x" * 256}, "id"),
        ({"state": "RESOLVED"}, "state"),
        ({"state": None}, "state"),
        ({"title": {"text": "x"}}, "title"),
        ({"impactedEntities": {"name": "checkout-api"}}, "impactedEntities"),
        ({"priority": 1}, "priority"),
    ],
    ids=[
        "not-an-object",
        "no-id",
        "blank-id",
        "long-id",
        "unknown-state",
        "no-state",
        "title-object",
        "entities-object",
        "priority-number",
    ],
)
def test_malformed_payload_is_400_and_stores_nothing(
    client, django_capture_on_commit_callbacks, integration, change, field
):
    body: object = ["ACTIVATED"]
    if change is not None:
        body = activated()
        body.update(change)
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert callbacks == [] and nothing_written()


@override_settings(VIGIL_BASE_URL="https://vigil.example.com")
def test_admin_page_shows_the_snippet_with_url_header_and_template(client, superuser):
    integration = make_integration("newrelic")
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"https://vigil.example.com/hooks/newrelic/{integration.key}/" in text
    assert "Name:  X-Vigil-Token" in text
    assert f"Value: {integration.secret}" in text
    assert "{{ json issueId }}" in text
    assert "Closed resolves the alert" in text
