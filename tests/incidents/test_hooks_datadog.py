"""Datadog's Webhooks integration through /hooks/datadog/<key>/, with Vigil's payload (the
snippet's) and Datadog's default one, the secret in the X-Vigil-Token header.

The payloads are shaped as Datadog sends them: the keys and $VARIABLES of Datadog's
documentation (https://docs.datadoghq.com/integrations/webhooks/, "Usage" for the default
payload and "Variables" for $ALERT_ID, $ALERT_SCOPE, $ALERT_TRANSITION, $AGGREG_KEY,
$ALERT_PRIORITY, $DATE in epoch milliseconds, $TAGS and $ALERT_SCOPE as comma-separated
``key:value`` lists, $LINK), filled in as a multi-alert disk monitor on db-1 would fill them.
"""

from __future__ import annotations

import copy
import json
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

STARTED = datetime(2026, 11, 27, 9, 40, tzinfo=UTC)  # the sample's $DATE, 1795772400000
RECOVERED_MS = "1795772670000"  # 09:44:30


def triggered() -> dict:
    return payload("datadog-webhook-vigil-triggered.json")


def transition(body: dict, name: str, *, date: str | None = None) -> dict:
    body = copy.deepcopy(body)
    body["alert_transition"] = name
    body["alert_title"] = body["alert_title"].replace("Triggered", name)
    body["title"] = body["title"].replace("Triggered", name)
    if date is not None:
        body["date"] = body["last_updated"] = date
    return body


@pytest.fixture
def integration(service):
    return make_integration("datadog", service=service, auto_resolve=True, default_severity=4)


def send(client, capture, integration, body):
    headers = {integration.auth_header: integration.secret}
    return post(client, hook_path(integration), body, capture=capture, **headers)


def test_trigger_opens_an_incident_repeat_counts_and_recovery_resolves(
    client, django_capture_on_commit_callbacks, integration
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, triggered())
    assert response.status_code == 202, response.content
    assert response.json()["alerts"] == 1 and len(callbacks) == 1
    process_pending()

    alert = Alert.objects.get()
    incident = Incident.objects.get()
    assert incident.title == "Disk almost full (env:prod,host:db-1)"
    assert incident.severity_id == 2  # P2, no alert rule matched
    assert incident.impact_started_at == STARTED
    assert alert.fingerprint == "148275309/env:prod,host:db-1"
    assert alert.starts_at == STARTED and not alert.starts_at_estimated
    assert alert.annotations["url"] == (
        "https://app.datadoghq.com/event/jump_to?event_id=7716548234011234567"
    )
    assert alert.annotations["snapshot_url"].startswith("https://p.datadoghq.com/snapshot/")
    assert alert.annotations["query"].startswith("avg(last_5m)")
    assert {k: alert.labels[k] for k in ("host", "env", "service", "team", "priority")} == {
        "host": "db-1",
        "env": "prod",
        "service": "postgres",
        "team": "dba",
        "priority": "P2",
    }
    assert alert.labels["monitor_id"] == "148275309"
    assert alert.raw["alert_transition"] == "Triggered"

    # Datadog's reminders while the alert lasts count on the same alert.
    for name in ("Re-Triggered", "Renotify"):
        send(client, django_capture_on_commit_callbacks, integration, transition(triggered(), name))
    process_pending()
    alert.refresh_from_db()
    assert (alert.count, alert.status, Incident.objects.count()) == (3, "firing", 1)

    recovered = transition(triggered(), "Recovered", date=RECOVERED_MS)
    send(client, django_capture_on_commit_callbacks, integration, recovered)
    process_pending()
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.ends_at == datetime(2026, 11, 27, 9, 44, 30, tzinfo=UTC)
    assert incident.status == "monitoring"


def test_each_group_of_a_multi_alert_monitor_is_an_alert_in_the_same_incident(
    client, django_capture_on_commit_callbacks, integration
):
    send(client, django_capture_on_commit_callbacks, integration, triggered())
    other = triggered()
    other["alert_scope"] = "env:prod, host:db-2"
    other["hostname"] = "db-2"
    other["alert_title"] = "[Triggered on {env:prod,host:db-2}] Disk almost full"
    send(client, django_capture_on_commit_callbacks, integration, other)
    # Warn is still a firing state of db-2's alert.
    send(client, django_capture_on_commit_callbacks, integration, transition(other, "Warn"))
    process_pending()
    alerts = {a.labels["host"]: a for a in Alert.objects.all()}
    assert sorted(alerts) == ["db-1", "db-2"]
    assert alerts["db-2"].fingerprint == "148275309/env:prod,host:db-2"
    assert alerts["db-2"].count == 2
    assert Incident.objects.count() == 1  # one $AGGREG_KEY, one incident

    # db-1 recovers; db-2 still fires, so the incident stays open.
    recovered = transition(triggered(), "Recovered", date=RECOVERED_MS)
    send(client, django_capture_on_commit_callbacks, integration, recovered)
    process_pending()
    assert Alert.objects.get(labels__host="db-1").status == "resolved"
    assert Incident.objects.get().status == "open"


@pytest.mark.parametrize(
    "priority, severity",
    [("P1", 1), ("P2", 2), ("P3", 3), ("P4", 4), ("P5", 4), ("", 3), ("$ALERT_PRIORITY", 3)],
    ids=["P1", "P2", "P3", "P4", "P5", "none", "unfilled"],
)
def test_priority_gives_the_severity(
    client, django_capture_on_commit_callbacks, service, priority, severity
):
    # No priority: the integration's default severity (Sev 3 here).
    integration = make_integration("datadog", service=service, default_severity=3)
    body = triggered()
    body["alert_priority"] = priority
    body["title"] = body["title"].removeprefix("[P2] ")
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    assert Incident.objects.get().severity_id == severity


def test_datadogs_default_payload_is_read_from_its_title_and_monitor_link(
    client, django_capture_on_commit_callbacks, integration
):
    body = payload("datadog-webhook-default-triggered.json")
    response, _ = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 202, response.content
    process_pending()
    alert = Alert.objects.get()
    # The same identity as Vigil's payload gives: monitor 148275309, scope env:prod,host:db-1.
    assert alert.fingerprint == "148275309/env:prod,host:db-1"
    assert (alert.severity_id, alert.starts_at) == (2, STARTED)
    assert Incident.objects.get().title == "Disk almost full (env:prod,host:db-1)"

    recovered = copy.deepcopy(body)
    recovered["title"] = "[P2] [Recovered on {env:prod,host:db-1}] Disk almost full"
    recovered["date"] = RECOVERED_MS
    send(client, django_capture_on_commit_callbacks, integration, recovered)
    process_pending()
    alert.refresh_from_db()
    assert alert.status == "resolved"


@pytest.mark.parametrize(
    "change, field",
    [
        (None, "non_field_errors"),
        ({"alert_transition": "Exploded"}, "alert_transition"),
        ({"alert_transition": "", "alert_title": "Disk full", "title": "x"}, "alert_transition"),
        ({"tags": ["env:prod"]}, "tags"),
        ({"alert_id": {"id": 1}}, "alert_id"),
        ({"org": "Example Corp"}, "org"),
    ],
    ids=["not-an-object", "unknown-transition", "no-transition", "tags-list", "id-object", "org"],
)
def test_malformed_payload_is_400_and_stores_nothing(
    client, django_capture_on_commit_callbacks, integration, change, field
):
    body: object = ["not", "an", "object"]
    if change is not None:
        body = triggered()
        body.update(change)
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert callbacks == [] and nothing_written()


def test_nul_characters_are_cleaned_not_refused(
    client, django_capture_on_commit_callbacks, integration
):
    # Datadog escapes the message into JSON; NUL characters are cleaned before storage of
    # the alert, not refused.
    body = triggered()
    body["body"] = "Disk \u0000full"
    response, _ = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 202
    process_pending()
    assert Alert.objects.get().annotations["description"] == "Disk \ufffdfull"


@override_settings(VIGIL_BASE_URL="https://vigil.example.com")
def test_admin_page_shows_the_snippet_with_url_payload_and_header(client, superuser):
    integration = make_integration("datadog")
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"https://vigil.example.com/hooks/datadog/{integration.key}/" in text
    assert integration.secret in text
    header = json.dumps({"X-Vigil-Token": integration.secret}).replace('"', "&quot;")
    assert header in text
    for variable in ("$ALERT_ID", "$ALERT_SCOPE", "$ALERT_TRANSITION", "$AGGREG_KEY"):
        assert variable in text
