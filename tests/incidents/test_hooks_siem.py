"""Security tools (SIEM) through the generic hook, as the README's "Security tools (SIEM)"
maps them: each tool's finding posted as Vigil's generic alert with ``detection_source``
``security_monitoring``, signed as the generic hook requires (X-Vigil-Timestamp and
X-Vigil-Signature).

The bodies are what the README's mappings make of a Wazuh alert (the JSON file Wazuh's
integrator hands a custom integration: ``id``, ``timestamp``, ``rule.level``,
``rule.description``, ``rule.id``, ``rule.groups``, ``rule.mitre.id``, ``agent.id``,
``agent.name``, ``full_log``) and of a Microsoft Sentinel incident (a playbook's incident
trigger: ``properties.incidentNumber``, ``title``, ``severity``, ``status``,
``firstActivityTimeUtc``, ``incidentUrl``, ``additionalData.tactics``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

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

# A Wazuh alert: rule 5763 (sshd brute force, level 10) on agent 003, and what a custom
# integration script (/var/ossec/integrations/custom-vigil) posts for it.
WAZUH_ALERT = {
    "id": "1795772467.1204412",
    "timestamp": "2026-11-27T09:41:07.123+0000",
    "rule": {
        "level": 10,
        "description": "sshd: brute force trying to get access to the system. Non existent user.",
        "id": "5763",
        "groups": ["syslog", "sshd", "authentication_failures"],
        "mitre": {"id": ["T1110"], "tactic": ["Credential Access"]},
    },
    "agent": {"id": "003", "name": "bastion-1", "ip": "10.0.9.4"},
    "full_log": "Nov 27 09:41:07 bastion-1 sshd[4121]: Invalid user admin from 203.0.113.50",
}


# Wazuh's rule levels (0-15) as generic severities.
WAZUH_LEVELS = ((13, "critical"), (10, "error"), (7, "warning"), (0, "info"))


def wazuh_mapping(alert: dict) -> dict:
    level = alert["rule"]["level"]
    severity = next(word for floor, word in WAZUH_LEVELS if level >= floor)
    return {
        "title": f"Wazuh: {alert['rule']['description']} ({alert['agent']['name']})",
        "dedup_key": f"wazuh-{alert['rule']['id']}-{alert['agent']['id']}",
        "group_key": f"wazuh-agent-{alert['agent']['id']}",
        "severity": severity,
        "detection_source": "security_monitoring",
        "labels": {
            "host": alert["agent"]["name"],
            "rule_id": alert["rule"]["id"],
            "rule_level": str(level),
            "groups": ",".join(alert["rule"]["groups"]),
            "mitre": ",".join(alert["rule"]["mitre"]["id"]),
        },
        "description": alert["full_log"],
        "starts_at": alert["timestamp"],
    }


# A Sentinel incident as a playbook's incident trigger gives it (its "object.properties"),
# and what the playbook's HTTP action posts for it.
SENTINEL_INCIDENT = {
    "incidentNumber": 4711,
    "title": "Multiple failed sign-ins followed by a successful one",
    "severity": "High",
    "status": "New",
    "firstActivityTimeUtc": "2026-11-27T09:31:00Z",
    "incidentUrl": "https://portal.azure.com/#asset/Microsoft_Azure_Security_Insights/Incident/"
    "subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/"
    "soc/providers/Microsoft.SecurityInsights/Incidents/8a1f",
    "additionalData": {"tactics": ["CredentialAccess", "InitialAccess"]},
}
SENTINEL_SEVERITY = {"High": "error", "Medium": "warning", "Low": "info", "Informational": "info"}


def sentinel_mapping(incident: dict) -> dict:
    closed = incident["status"] == "Closed"
    return {
        "title": incident["title"],
        "status": "resolved" if closed else "firing",
        "dedup_key": f"sentinel-{incident['incidentNumber']}",
        "severity": SENTINEL_SEVERITY[incident["severity"]],
        "detection_source": "security_monitoring",
        "labels": {
            "sentinel_incident": str(incident["incidentNumber"]),
            "tactics": ",".join(incident["additionalData"]["tactics"]),
        },
        "annotations": {"url": incident["incidentUrl"]},
        "starts_at": incident["firstActivityTimeUtc"],
    }


@pytest.fixture
def integration(service):
    return make_integration("generic", service=service, default_severity=4)


def send(client, capture, integration, data):
    body = json.dumps(data).encode()
    headers = vigil_headers(integration.secret, body)
    return post(client, hook_path(integration), body, capture=capture, **headers)


def test_a_wazuh_alert_opens_a_security_incident_and_is_resolved(
    client,
    django_capture_on_commit_callbacks,
    integration,
    at_now,  # noqa: F811
):
    mapped = wazuh_mapping(WAZUH_ALERT)
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, mapped)
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    process_pending()
    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.severity_id) == ("wazuh-5763-003", 2)
    assert alert.labels["mitre"] == "T1110"
    assert alert.annotations["description"].endswith("Invalid user admin from 203.0.113.50")
    incident = Incident.objects.get()
    assert incident.detection_source == "security_monitoring"
    assert incident.title.startswith("Wazuh: sshd: brute force")
    assert incident.impact_started_at == datetime(2026, 11, 27, 9, 41, 7, 123000, tzinfo=UTC)

    # The same rule on the same agent again, a second later (a request signed in the same
    # second is the same request: refused as a replay): one alert, counted.
    at_now.shift(1)
    send(client, django_capture_on_commit_callbacks, integration, mapped)
    process_pending()
    assert Alert.objects.get().count == 2

    resolved = {"title": mapped["title"], "dedup_key": mapped["dedup_key"], "status": "resolved"}
    response, _ = send(client, django_capture_on_commit_callbacks, integration, resolved)
    assert response.status_code == 202
    process_pending()
    assert Alert.objects.get().status == "resolved"


def test_a_sentinel_incident_opens_a_security_incident_and_closing_it_resolves(
    client, django_capture_on_commit_callbacks, service
):
    integration = make_integration("generic", service=service, auto_resolve=True)
    mapped = sentinel_mapping(SENTINEL_INCIDENT)
    response, _ = send(client, django_capture_on_commit_callbacks, integration, mapped)
    assert response.status_code == 202, response.content
    process_pending()
    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.severity_id) == ("sentinel-4711", 2)
    assert alert.annotations["url"] == SENTINEL_INCIDENT["incidentUrl"]
    incident = Incident.objects.get()
    assert incident.detection_source == "security_monitoring"
    assert incident.title == "Multiple failed sign-ins followed by a successful one"
    assert incident.impact_started_at == datetime(2026, 11, 27, 9, 31, tzinfo=UTC)

    # Closed in Sentinel: the automation rule runs the playbook again.
    closed = sentinel_mapping({**SENTINEL_INCIDENT, "status": "Closed"})
    response, _ = send(client, django_capture_on_commit_callbacks, integration, closed)
    assert response.status_code == 202
    process_pending()
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert alert.status == "resolved"
    assert incident.status == "monitoring"
    assert incident.detection_source == "security_monitoring"


def test_an_unknown_detection_source_is_400_and_nothing_is_stored(
    client, django_capture_on_commit_callbacks, integration
):
    mapped = {**wazuh_mapping(WAZUH_ALERT), "detection_source": "siem"}
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, mapped)
    assert response.status_code == 400
    assert "detection_source" in response.json()["errors"]
    assert callbacks == []
    assert not (WebhookDelivery.objects.exists() or Alert.objects.exists())
