"""Grafana alerting (webhook payload v1) through /hooks/grafana/<key>/, signed with
X-Grafana-Alerting-Signature: over "<timestamp>:<body>" when Grafana sends
X-Grafana-Alerting-Signature-Timestamp (rejected more than 5 minutes off), or over the body
alone where the integration allows it. Replays and malformed timestamps: test_hooks_replay.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import time_machine

from incidents.models import Alert, Incident, Kind
from tests.incidents.detection_fixtures import (
    grafana_payload,
    grafana_signature,
    hook_path,
    make_integration,
    nothing_written,
    post,
    process_pending,
    resolved,
)

# Just after the sample's alert started (09:50).
NOW = datetime(2026, 11, 27, 9, 55, tzinfo=UTC)


@pytest.fixture(autouse=True)
def at_now():
    with time_machine.travel(NOW, tick=True):
        yield


pytestmark = pytest.mark.django_db


@pytest.fixture
def integration(service):
    return make_integration("grafana", service=service, auto_resolve=True)


@pytest.fixture
def legacy(service):
    """An integration that still accepts the signature of the body alone."""
    return make_integration("grafana", service=service, auto_resolve=True, require_timestamp=False)


def signed(integration, body: bytes, *, timestamp: str | None = "now") -> dict[str, str]:
    if timestamp == "now":
        timestamp = str(int(time.time()))
    headers = {
        "X-Grafana-Alerting-Signature": grafana_signature(integration.secret, body, timestamp)
    }
    if timestamp is not None:
        headers["X-Grafana-Alerting-Signature-Timestamp"] = timestamp
    return headers


@pytest.mark.parametrize("with_timestamp", [False, True], ids=["body", "timestamp:body"])
def test_signed_firing_with_values_opens_an_incident_then_resolves(
    client, django_capture_on_commit_callbacks, integration, legacy, with_timestamp
):
    # Signed over the body alone: only an integration that does not require a timestamp.
    integration = integration if with_timestamp else legacy
    body = json.dumps(grafana_payload()).encode()
    timestamp = str(int(NOW.timestamp())) if with_timestamp else None
    response, callbacks = post(
        client,
        hook_path(integration),
        body,
        capture=django_capture_on_commit_callbacks,
        **signed(integration, body, timestamp=timestamp),
    )
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    assert process_pending() == ["processed"]

    alert = Alert.objects.get()
    # The §7.2 Disk Space rule, its threshold (85 %) checked on Grafana's value B (87.1).
    assert (alert.rule.key, alert.severity_id, alert.action, alert.value) == (
        "disk_space",
        2,
        "immediate_attention",
        87.1,
    )
    assert alert.fingerprint == "7d13be0c5f2a9e84"
    assert alert.raw["values"] == {"B": 87.1, "C": 1}
    assert alert.raw["dashboardURL"] == "https://grafana.example.com/d/node"
    assert alert.starts_at == datetime(2026, 11, 27, 9, 50, tzinfo=UTC)
    incident = Incident.objects.get()
    assert incident.title == "Disk usage 87% on db-1"
    assert (incident.severity_id, incident.urgency) == (2, "high")
    assert (
        incident.timeline.filter(kind=Kind.ALERT)
        .first()
        .message.startswith(
            "Alert opened this incident: Disk usage 87% on db-1 (Sev 2; alert rule Disk Space, "
            "value 87.1 %: immediate attention)."
        )
    )

    body = json.dumps(resolved(grafana_payload(), ends_at="2026-11-27T09:54:00Z")).encode()
    response, _ = post(
        client,
        hook_path(integration),
        body,
        capture=django_capture_on_commit_callbacks,
        **signed(integration, body, timestamp=timestamp),
    )
    assert response.status_code == 202
    process_pending()
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert alert.status == "resolved"
    assert incident.status == "monitoring"


def test_start_time_in_the_future_is_taken_as_receipt_time(
    client, django_capture_on_commit_callbacks, integration
):
    # A start time 35 minutes ahead of Vigil's clock is not believed: the receipt time is
    # used and the alert says so.
    data = grafana_payload()
    data["alerts"][0]["startsAt"] = "2026-11-27T10:30:00+00:00"
    body = json.dumps(data).encode()
    response, _ = post(
        client,
        hook_path(integration),
        body,
        capture=django_capture_on_commit_callbacks,
        **signed(integration, body),
    )
    assert response.status_code == 202
    process_pending()
    alert = Alert.objects.get()
    assert alert.starts_at_estimated
    assert alert.starts_at == alert.received_at
    assert Incident.objects.get().impact_started_at is None
    assert "Its start time was missing or unreadable" in (
        Incident.objects.get().timeline.filter(kind=Kind.ALERT).first().message
    )


def test_value_below_the_threshold_does_not_take_the_rule(
    client, django_capture_on_commit_callbacks, integration
):
    data = grafana_payload()
    data["alerts"][0]["values"] = {"B": 60.0, "C": 0}
    body = json.dumps(data).encode()
    post(
        client,
        hook_path(integration),
        body,
        capture=django_capture_on_commit_callbacks,
        **signed(integration, body),
    )
    process_pending()
    alert = Alert.objects.get()
    # No rule: the integration's default severity (Sev 3), the response team paged.
    assert (alert.rule, alert.severity_id, alert.value) == (None, 3, None)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Grafana-Alerting-Signature": "0" * 64},
        {"X-Grafana-Alerting-Signature": "not hex"},
    ],
    ids=["missing", "wrong", "garbage"],
)
def test_missing_or_wrong_signature_is_401(
    client, django_capture_on_commit_callbacks, integration, headers, caplog
):
    body = json.dumps(grafana_payload()).encode()
    response, callbacks = post(
        client, hook_path(integration), body, capture=django_capture_on_commit_callbacks, **headers
    )
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert callbacks == [] and nothing_written()
    assert "Refused grafana webhook: 401" in caplog.text


def test_signature_of_another_body_is_401(client, django_capture_on_commit_callbacks, integration):
    body = json.dumps(grafana_payload()).encode()
    tampered = body.replace(b"87.1", b"12.0")
    response, _ = post(
        client,
        hook_path(integration),
        tampered,
        capture=django_capture_on_commit_callbacks,
        **signed(integration, body),
    )
    assert response.status_code == 401 and nothing_written()


@pytest.mark.parametrize("offset", [-301, 301, None], ids=["old", "ahead", "unparseable"])
def test_timestamp_more_than_five_minutes_off_is_401(
    client, django_capture_on_commit_callbacks, integration, offset
):
    body = json.dumps(grafana_payload()).encode()
    timestamp = "yesterday" if offset is None else str(int(NOW.timestamp()) + offset)
    headers = {
        "X-Grafana-Alerting-Signature": grafana_signature(integration.secret, body, timestamp),
        "X-Grafana-Alerting-Signature-Timestamp": timestamp,
    }
    response, _ = post(
        client, hook_path(integration), body, capture=django_capture_on_commit_callbacks, **headers
    )
    assert response.status_code == 401 and nothing_written()


def test_timestamp_signature_must_cover_the_timestamp(
    client, django_capture_on_commit_callbacks, integration
):
    body = json.dumps(grafana_payload()).encode()
    timestamp = str(int(NOW.timestamp()))
    headers = {
        # Signed over the body alone but sent with a timestamp: a replayed body with a fresh
        # timestamp does not verify.
        "X-Grafana-Alerting-Signature": grafana_signature(integration.secret, body),
        "X-Grafana-Alerting-Signature-Timestamp": timestamp,
    }
    response, _ = post(
        client, hook_path(integration), body, capture=django_capture_on_commit_callbacks, **headers
    )
    assert response.status_code == 401 and nothing_written()


def test_without_a_secret_no_signature_is_needed(client, django_capture_on_commit_callbacks):
    integration = make_integration("grafana", secret="")
    response, _ = post(
        client,
        hook_path(integration),
        grafana_payload(),
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 202
