"""Vigil's generic signed JSON hook (/hooks/generic/<key>/): the documented shape, the
X-Vigil-Signature HMAC-SHA256 of "<X-Vigil-Timestamp>.<raw body>", firing and resolving by dedup
key. Replays and timestamps: test_hooks_replay.py."""

from __future__ import annotations

import json

import pytest

from incidents.models import Alert, Incident, WebhookDelivery
from tests.incidents.detection_fixtures import (
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    post,
    process_pending,
    vigil_headers,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

# The README's example ("Sending alerts to Vigil").
EXAMPLE = {
    "title": "Checkout error rate above 5%",
    "severity": "critical",
    "status": "firing",
    "dedup_key": "checkout-errors",
    "labels": {"service": "checkout", "alertname": "HighErrorRate"},
}


@pytest.fixture
def integration(service):
    return make_integration("generic", service=service, default_severity=4, auto_resolve=True)


def send(client, capture, integration, data):
    body = json.dumps(data).encode()
    headers = vigil_headers(integration.secret, body)
    return post(client, hook_path(integration), body, capture=capture, **headers)


def test_firing_then_resolved_by_dedup_key(client, django_capture_on_commit_callbacks, integration):
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, EXAMPLE)
    assert response.status_code == 202, response.content
    assert response.json()["alerts"] == 1
    assert len(callbacks) == 1
    process_pending()
    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.rule.key, alert.severity_id) == (
        "checkout-errors",
        "error_rate",
        1,
    )
    assert Incident.objects.get().title == "Checkout error rate above 5%"

    send(
        client,
        django_capture_on_commit_callbacks,
        integration,
        {
            "title": "Checkout error rate above 5%",
            "dedup_key": "checkout-errors",
            "status": "resolved",
        },
    )
    process_pending()
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert Incident.objects.get().status == "monitoring"


def test_minimal_alert_uses_the_sender_severity_or_the_default(
    client,
    django_capture_on_commit_callbacks,
    integration,
    at_now,  # noqa: F811 (the traveller)
):
    send(client, django_capture_on_commit_callbacks, integration, {"title": "Backup job late"})
    send(
        client,
        django_capture_on_commit_callbacks,
        integration,
        {"title": "Vendor API degraded", "severity": "warning", "detection_source": "third_party"},
    )
    process_pending()
    by_title = {a.title: a for a in Alert.objects.select_related("incident")}
    assert by_title["Backup job late"].severity_id == 4  # the integration's default
    assert by_title["Vendor API degraded"].severity_id == 3  # warning → Sev 3
    assert by_title["Vendor API degraded"].incident.detection_source == "third_party"
    # No dedup key given: one is derived from the title and labels, stable across repeats.
    at_now.shift(1)  # the same body signed a second later: a new request, not a replay
    send(client, django_capture_on_commit_callbacks, integration, {"title": "Backup job late"})
    process_pending()
    assert Alert.objects.get(title="Backup job late").count == 2


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=" + "0" * 64, "sha1=abc", "deadbeef"],
    ids=["missing", "wrong", "other-scheme", "no-scheme"],
)
def test_bad_signature_is_401_and_writes_nothing(
    client, django_capture_on_commit_callbacks, integration, signature
):
    body = json.dumps(EXAMPLE).encode()
    # A valid timestamp, so that the signature is what is refused.
    headers = {"X-Vigil-Timestamp": vigil_headers(integration.secret, body)["X-Vigil-Timestamp"]}
    if signature:
        headers["X-Vigil-Signature"] = signature
    response, callbacks = post(
        client, hook_path(integration), body, capture=django_capture_on_commit_callbacks, **headers
    )
    assert response.status_code == 401
    assert callbacks == [] and not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    "data, field",
    [
        ({}, "title"),
        ({"title": "  "}, "title"),
        ({"title": "x", "status": "ok"}, "status"),
        ({"title": "x", "severity": "urgent"}, "severity"),
        ({"title": "x", "labels": ["a"]}, "labels"),
        ({"title": "x", "labels": {"a": {"nested": 1}}}, "labels.a"),
        ({"title": "x", "value": "high"}, "value"),
        ({"title": "x", "dedup_key": "k" * 256}, "dedup_key"),
        ({"title": "x", "detection_source": "customer_report"}, "detection_source"),
    ],
)
def test_invalid_shape_is_400_with_the_field(
    client, django_capture_on_commit_callbacks, integration, data, field
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, data)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert callbacks == [] and not WebhookDelivery.objects.exists()
