"""Elastic: Kibana alerting rules through the Webhook connector, posted to
/hooks/elastic/<key>/ with the secret in the X-Vigil-Token header.

The sample (payloads/kibana-webhook-connector-threshold-met.json) is Vigil's template (the
Body of the integration's snippet) as Kibana renders it for an Index threshold rule grouped
by host, in the action group "threshold met", for host db-1: the rule's variables
(rule.id, rule.name, rule.url, rule.tags, rule.spaceId), the alert's (alert.id, alert.uuid,
alert.actionGroup, alert.actionGroupName, alert.flapping), the rule type's context
(context.title, context.message, context.conditions, context.value; no reason, link or
alert details URL, which render empty) and date. Kibana escapes each value for a JSON string
and renders an array as its items joined with commas; ``test_the_template_renders_to_the_
sample`` renders the snippet's template that way to prove the sample is its output.
"""

from __future__ import annotations

import copy
import html
import json
import re
from datetime import UTC, datetime

import pytest
from django.test import override_settings

from incidents.models import Alert, Incident, Integration
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

STARTED = datetime(2026, 11, 27, 9, 40, tzinfo=UTC)
RECOVERED = datetime(2026, 11, 27, 9, 44, tzinfo=UTC)
RULE_ID = "5c3f4a1e-8b2d-4e6f-9a7c-1d2e3f4a5b6c"
RULE_URL = (
    "https://kibana.example.com/app/management/insightsAndAlerting/triggersActions/rule/" + RULE_ID
)


def threshold_met() -> dict:
    return payload("kibana-webhook-connector-threshold-met.json")


def recovered(body: dict | None = None) -> dict:
    """The same alert's action run when it recovers (Kibana's "recovered" action group)."""
    body = copy.deepcopy(body or threshold_met())
    body["alert"].update(actionGroup="recovered", actionGroupName="Recovered")
    body["context"].update(
        title="alert Checkout 5xx errors group db-1 recovered", message="", value="12"
    )
    body["date"] = "2026-11-27T09:44:00.000Z"
    return body


@pytest.fixture
def integration(service):
    return make_integration("elastic", service=service, auto_resolve=True, default_severity=4)


def send(client, capture, integration, body):
    headers = {"X-Vigil-Token": integration.secret}
    return post(client, hook_path(integration), body, capture=capture, **headers)


def test_threshold_met_opens_an_incident_and_recovered_resolves_it(
    client, django_capture_on_commit_callbacks, integration
):
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, integration, threshold_met()
    )
    assert response.status_code == 202, response.content
    assert response.json()["alerts"] == 1
    assert len(callbacks) == 1
    assert process_pending() == ["processed"]

    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.status) == (f"{RULE_ID}/db-1", "firing")
    assert alert.severity_id == 2  # the template's "severity": "error"
    assert alert.starts_at == STARTED and not alert.starts_at_estimated
    assert alert.annotations["url"] == RULE_URL
    assert alert.annotations["description"].startswith("alert 'Checkout 5xx errors' is active")
    assert alert.labels == {
        "service": "checkout",
        "team": "payments",
        "rule": "Checkout 5xx errors",
        "rule_id": RULE_ID,
        "alert_id": "db-1",
        "action_group": "threshold met",
        "space": "default",
        "tags": "service:checkout,team:payments,production",
        "severity": "error",
    }
    assert alert.raw["context"]["value"] == "42"
    incident = Incident.objects.get()
    assert incident.title == "Checkout 5xx errors: db-1"
    assert incident.severity_id == 2
    assert incident.impact_started_at == STARTED

    response, _ = send(client, django_capture_on_commit_callbacks, integration, recovered())
    assert response.status_code == 202, response.content
    process_pending()
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert (alert.status, alert.ends_at) == ("resolved", RECOVERED)
    assert incident.status == "monitoring"


def test_a_repeated_action_is_one_alert(client, django_capture_on_commit_callbacks, integration):
    # "On check intervals": the same alert again at each run, with the run's date.
    later = threshold_met()
    later["date"] = "2026-11-27T09:41:00.000Z"
    for body in (threshold_met(), later):
        response, _ = send(client, django_capture_on_commit_callbacks, integration, body)
        assert response.status_code == 202
    process_pending()
    alert = Alert.objects.get()
    assert (alert.count, alert.starts_at) == (2, STARTED)
    assert Incident.objects.count() == 1


def test_another_alert_of_the_rule_joins_its_incident(
    client, django_capture_on_commit_callbacks, integration
):
    other = threshold_met()
    other["alert"]["id"] = "db-2"
    for body in (threshold_met(), other):
        send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    assert sorted(Alert.objects.values_list("fingerprint", flat=True)) == [
        f"{RULE_ID}/db-1",
        f"{RULE_ID}/db-2",
    ]
    assert Incident.objects.count() == 1


def test_an_ungrouped_rules_alert_is_titled_by_the_rule(
    client, django_capture_on_commit_callbacks, integration
):
    body = threshold_met()
    body["alert"]["id"] = "query matched"
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    assert Incident.objects.get().title == "Checkout 5xx errors"


@pytest.mark.parametrize(
    "severity, tags, level",
    [
        ("critical", None, 1),
        ("warning", None, 3),
        ("info", None, 4),
        ("3", None, 3),
        (1, None, 1),
        ("high", None, 2),  # Elastic Security's words
        ("medium", None, 3),
        ("low", None, 4),
        ("", "severity:critical,service:checkout", 1),  # no severity: the rule's tag
        ("", "service:checkout", 3),  # neither: the integration's default
    ],
)
def test_severity_from_the_template_then_a_rule_tag(
    client, django_capture_on_commit_callbacks, service, severity, tags, level
):
    integration = make_integration("elastic", service=service, default_severity=3)
    body = threshold_met()
    body["severity"] = severity
    if tags is not None:
        body["rule"]["tags"] = tags
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    assert Alert.objects.get().severity_id == level
    assert Incident.objects.get().severity_id == level


def test_tags_as_a_json_list(client, django_capture_on_commit_callbacks, integration):
    # {{{rule.tags.asJSON}}} in place of "{{rule.tags}}".
    body = threshold_met()
    body["rule"]["tags"] = ["service:checkout", "production"]
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    labels = Alert.objects.get().labels
    assert (labels["service"], labels["tags"]) == ("checkout", "service:checkout,production")


def test_an_unrendered_template_is_400_and_nothing_is_stored(
    client, superuser, django_capture_on_commit_callbacks, integration
):
    # The connector's Test tab posts the body as typed: the template itself.
    template = json.loads(_template(client, superuser, integration))
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, template)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["errors"]) == {"rule.id", "alert.id", "alert.actionGroup"}
    assert "unrendered ({{alert.id}})" in body["errors"]["alert.id"][0]
    assert "Test" in body["errors"]["alert.id"][0]
    assert callbacks == [] and nothing_written()


def _with(change):
    body = threshold_met()
    change(body)
    return body


@pytest.mark.parametrize(
    "body, field",
    [
        (_with(lambda b: b.pop("rule")), "rule"),
        (_with(lambda b: b.update(alert="db-1")), "alert"),
        (_with(lambda b: b["alert"].update(id="")), "alert.id"),  # a summary of alerts
        (_with(lambda b: b["alert"].pop("actionGroup")), "alert.actionGroup"),
        (_with(lambda b: b["rule"].update(id=42)), "rule.id"),
        (_with(lambda b: b.update(severity="urgent")), "severity"),
        (_with(lambda b: b["rule"].update(tags=7)), "rule.tags"),
        (_with(lambda b: b.update(title=["x"])), "title"),
        ({"message": "Hello from the connector's Test tab"}, "rule"),
    ],
)
def test_malformed_bodies_are_400_and_nothing_is_stored(
    client, django_capture_on_commit_callbacks, integration, body, field
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert callbacks == [] and nothing_written()


def test_a_summary_action_is_told_to_run_for_each_alert(
    client, django_capture_on_commit_callbacks, integration
):
    body = threshold_met()
    body["alert"]["id"] = ""
    response, _ = send(client, django_capture_on_commit_callbacks, integration, body)
    assert "For each alert" in " ".join(response.json()["errors"]["alert.id"])


def _snippet(client, superuser, integration) -> str:
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
    assert page.status_code == 200
    found = re.search(r"<pre[^>]*>(.*?)</pre>", page.content.decode(), re.S)
    assert found, "no snippet on the page"
    return html.unescape(found.group(1))


def _template(client, superuser, integration) -> str:
    snippet = _snippet(client, superuser, integration)
    return snippet[snippet.index("Body:\n") + len("Body:\n") :]


@override_settings(VIGIL_BASE_URL="https://vigil.example.com")
def test_admin_page_shows_the_connector_with_url_header_and_template(
    client, superuser, integration
):
    snippet = _snippet(client, superuser, integration)
    assert f"URL:             https://vigil.example.com/hooks/elastic/{integration.key}/" in (
        snippet
    )
    assert f"X-Vigil-Token: {integration.secret}" in snippet
    assert "Run when: Recovered" in snippet
    template = _template(client, superuser, integration)
    for variable in ("{{rule.id}}", "{{alert.id}}", "{{alert.actionGroup}}", "{{date}}"):
        assert variable in template


def test_admin_page_with_basic_authentication(client, superuser, integration):
    Integration.objects.filter(pk=integration.pk).update(auth="basic")
    snippet = _snippet(client, superuser, integration)
    assert "Authentication:  Basic" in snippet
    assert f"Password:  {integration.secret}" in snippet
    assert "X-Vigil-Token" not in snippet


def _js_text(value) -> str:
    """A value as Kibana's Mustache prints it: JavaScript's string of it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_js_text(item) for item in value)
    return str(value)


def render(template: str, variables: dict) -> str:
    """``{{name.path}}`` replaced as the Webhook connector's body is: the value escaped for a
    JSON string; a missing variable renders empty."""

    def value(match: re.Match) -> str:
        found = variables
        for part in match.group(1).split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return json.dumps(_js_text(found), ensure_ascii=False)[1:-1]

    return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", value, template)


def test_the_template_renders_to_the_sample(client, superuser, integration):
    variables = {
        "rule": {
            "id": RULE_ID,
            "name": "Checkout 5xx errors",
            "url": RULE_URL,
            "tags": ["service:checkout", "team:payments", "production"],
            "spaceId": "default",
        },
        "alert": {
            "id": "db-1",
            "uuid": "0b9f3c2e-6a41-4d7b-8e15-2c9d7f1a4e63",
            "actionGroup": "threshold met",
            "actionGroupName": "Threshold met",
            "flapping": False,
        },
        # The Index threshold rule's context (it has no reason, link or alert details URL).
        "context": {
            "title": "alert Checkout 5xx errors group db-1 met threshold",
            "message": "alert 'Checkout 5xx errors' is active for group 'db-1':\n\n- Value: 42\n"
            "- Conditions Met: count is greater than 25 over 5m\n"
            "- Timestamp: 2026-11-27T09:40:00.000Z",
            "group": "db-1",
            "date": "2026-11-27T09:40:00.000Z",
            "value": 42,
            "conditions": "count is greater than 25",
        },
        "date": "2026-11-27T09:40:00.000Z",
        "kibanaBaseUrl": "https://kibana.example.com",
    }
    template = _template(client, superuser, integration)
    assert json.loads(render(template, variables)) == threshold_met()
