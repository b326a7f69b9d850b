"""Prometheus Alertmanager (webhook payload v4) through /hooks/alertmanager/<key>/: a group of
two alerts firing, repeating, resolving and firing again, with the bearer token."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from escalation.models import EscalationEvent
from incidents.models import (
    Alert,
    AlertGroup,
    Incident,
    Kind,
    Source,
    TimelineEntry,
    WebhookDelivery,
)
from incidents.services import incident_resolve
from tests.events import followed
from tests.incidents.detection_fixtures import (
    alertmanager_payload,
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    post,
    process_pending,
    resolved,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

# The incident's events are followed once the delivery's processing commits (escalation), as
# the workers do.
process_pending = followed(process_pending)


@pytest.fixture
def integration(service):
    return make_integration("alertmanager", service=service, auto_resolve=True)


def send(client, capture, integration, body, **headers):
    headers.setdefault("Authorization", f"Bearer {integration.secret}")
    response, callbacks = post(client, hook_path(integration), body, capture=capture, **headers)
    assert response.status_code == 202, response.content
    # The processing task is queued only once the delivery is committed.
    assert len(callbacks) == 1
    assert process_pending() == ["processed"]
    return response


def alert_entries(incident: Incident) -> list[str]:
    return list(
        TimelineEntry.objects.filter(incident=incident, kind=Kind.ALERT)
        .order_by("id")
        .values_list("message", flat=True)
    )


def test_group_of_two_fires_repeats_resolves_and_fires_again(
    client, django_capture_on_commit_callbacks, integration, service
):
    body = alertmanager_payload()
    response = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.json() == {
        "status": "accepted",
        "delivery": WebhookDelivery.objects.get().pk,
        "alerts": 2,
    }

    incident = Incident.objects.get()
    alerts = list(Alert.objects.order_by("fingerprint"))
    assert [(a.fingerprint, a.status, a.count, a.incident_id) for a in alerts] == [
        ("5a2b7c1d9e0f3a41", "firing", 1, incident.pk),
        ("c81f0e6b22d4a907", "firing", 1, incident.pk),
    ]
    # Classified by the §7.2 Error Rate rule: Critical, escalate immediately.
    assert {(a.severity_id, a.rule.key, a.action) for a in alerts} == {
        (1, "error_rate", "escalate")
    }
    assert alerts[0].labels["instance"] == "web-1:8080"
    assert alerts[0].annotations["summary"] == "Error rate 7.2% on web-1"
    assert alerts[0].raw["generatorURL"].startswith("http://prometheus.example.com")
    assert alerts[0].starts_at == datetime(2026, 11, 27, 9, 41, 8, 512000, tzinfo=UTC)
    assert not alerts[0].starts_at_estimated
    assert AlertGroup.objects.get().key == body["groupKey"]

    assert incident.title == "Error rate 7.2% on web-1"
    assert incident.severity_id == 1
    assert incident.detection_source == "monitoring"
    assert incident.urgency == "high"
    assert list(incident.services.all()) == [service]
    # Impact started when the first alert started, so detection time is measured (MTTD).
    assert incident.impact_started_at == alerts[0].starts_at
    created = incident.timeline.get(kind=Kind.CREATED)
    assert created.source == Source.WEBHOOK
    assert alert_entries(incident) == [
        "Alert opened this incident: Error rate 7.2% on web-1 (Sev 1; alert rule Error Rate: "
        "escalate immediately).",
        "Alert joined: Error rate 6.1% on web-2 (Sev 1; alert rule Error Rate: escalate "
        'immediately). Grouped by same Alertmanager group ({}/{service="checkout"}:'
        '{alertname="HighErrorRate"}).',
    ]
    # "Escalate immediately": the matrix's first step fired now, not after 30 minutes.
    first = EscalationEvent.objects.get(incident=incident)
    assert first.step == "sev1-0:30:00"
    assert first.target == "IT Manager"

    # Alertmanager repeats the group while it fires: counted, nothing new.
    send(client, django_capture_on_commit_callbacks, integration, body)
    assert [a.count for a in Alert.objects.order_by("fingerprint")] == [2, 2]
    assert Incident.objects.count() == 1
    assert len(alert_entries(incident)) == 2

    # Both resolve: recorded, and with auto-resolve the incident moves to monitoring.
    send(client, django_capture_on_commit_callbacks, integration, resolved(body))
    alerts = list(Alert.objects.order_by("fingerprint"))
    assert [a.status for a in alerts] == ["resolved", "resolved"]
    assert alerts[0].ends_at == datetime(2026, 11, 27, 9, 44, 30, tzinfo=UTC)
    assert alerts[0].resolved_at is not None
    incident.refresh_from_db()
    assert incident.status == "monitoring"
    assert alert_entries(incident)[2:] == [
        "Alert resolved: Error rate 7.2% on web-1.",
        "Alert resolved: Error rate 6.1% on web-2.",
        "All 2 alert(s) of this incident have resolved: moved to monitoring (alertmanager "
        "test auto-resolves). Resolve the incident once the fix is confirmed.",
    ]

    # A re-fire while the incident is still being watched: new alerts, same incident.
    refire = copy.deepcopy(body)
    refire["alerts"] = refire["alerts"][:1]
    refire["alerts"][0]["startsAt"] = "2026-11-27T09:44:45Z"
    send(client, django_capture_on_commit_callbacks, integration, refire)
    assert Alert.objects.count() == 3
    assert Alert.objects.get(status="firing").incident == incident
    assert Incident.objects.count() == 1

    # Once the incident is resolved, a re-fire opens a new incident.
    send(client, django_capture_on_commit_callbacks, integration, resolved(refire))
    incident_resolve(incident=incident, actor=None, source=Source.SYSTEM, resolution="Fixed.")
    send(client, django_capture_on_commit_callbacks, integration, body)
    assert Incident.objects.count() == 2
    second = Incident.objects.exclude(pk=incident.pk).get()
    assert set(Alert.objects.filter(status="firing").values_list("incident_id", flat=True)) == {
        second.pk
    }
    assert AlertGroup.objects.get().incident == second


def test_a_second_group_opens_its_own_incident(
    client, django_capture_on_commit_callbacks, integration
):
    send(client, django_capture_on_commit_callbacks, integration, alertmanager_payload())
    other = alertmanager_payload()
    other["groupKey"] = '{}/{service="search"}:{alertname="HighErrorRate"}'
    for index, alert in enumerate(other["alerts"]):
        alert["fingerprint"] = f"search-{index}"
    send(client, django_capture_on_commit_callbacks, integration, other)
    assert Incident.objects.count() == 2
    assert AlertGroup.objects.count() == 2


def test_without_a_secret_the_url_key_is_enough(client, django_capture_on_commit_callbacks):
    integration = make_integration("alertmanager", secret="")
    response, _ = post(
        client,
        hook_path(integration),
        alertmanager_payload(),
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 202


def test_grouping_rule_on_labels_puts_groups_together(
    client, django_capture_on_commit_callbacks, service
):
    integration = make_integration("alertmanager", group_by=["service"])
    send(client, django_capture_on_commit_callbacks, integration, alertmanager_payload())
    other = alertmanager_payload()
    other["groupKey"] = '{}/{service="checkout"}:{alertname="HighLatency"}'
    other["alerts"] = other["alerts"][:1]
    other["alerts"][0].update(
        fingerprint="latency-1",
        labels={"alertname": "HighLatency", "service": "checkout", "severity": "warning"},
        annotations={"summary": "p99 latency 7.5 s on checkout", "value": "7.5"},
    )
    send(client, django_capture_on_commit_callbacks, integration, other)
    incident = Incident.objects.get()
    assert Alert.objects.filter(incident=incident).count() == 3
    assert alert_entries(incident)[-1] == (
        "Alert joined: p99 latency 7.5 s on checkout (Sev 2; alert rule Response Time, value "
        "7.5 s: page on-call engineer). Grouped by same service=checkout (grouping rule)."
    )
