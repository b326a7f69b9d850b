"""Zabbix through Vigil's webhook media type, posted to /hooks/zabbix/<key>/ with the secret in
the X-Vigil-Token header.

The sample (payloads/zabbix-media-type-problem.json) is the body Vigil's shipped script
(incidents/detection/senders/zabbix_media_type.js) posts for a High problem on db-1 as Zabbix
7.0 resolves the media type's macros: {EVENT.TIMESTAMP} resolved, {EVENT.DATE}/{EVENT.TIME}
in the Vigil user's time zone (Europe/Berlin), {EVENT.TAGSJSON} sent as its array, and the
{EVENT.RECOVERY.*} macros left as their text, as Zabbix leaves them in a problem message.
``test_the_shipped_script_posts_the_sample`` runs the script (with Node.js standing in for
Zabbix's Duktape) to prove it.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from django.test import override_settings

from incidents.detection import senders
from incidents.models import Alert, Incident, WebhookDelivery
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

SCRIPT = Path(senders.__file__).with_name("zabbix_media_type.js")
STARTED = datetime(2026, 11, 27, 9, 38, 12, tzinfo=UTC)  # 1795772292, 10:38:12 in Berlin
RECOVERED = datetime(2026, 11, 27, 9, 44, 2, tzinfo=UTC)  # 1795772642
LINK = "https://zabbix.example.com/tr_events.php?triggerid=23712&eventid=48213"


def problem() -> dict:
    return payload("zabbix-media-type-problem.json")


def recovery(body: dict | None = None) -> dict:
    """The recovery message of the same problem: {EVENT.ID} is still the problem's id,
    {EVENT.VALUE} is 0 and the {EVENT.RECOVERY.*} macros are resolved."""
    body = copy.deepcopy(body or problem())
    body.update(
        event_value="0",
        recovery_id="48377",
        recovery_timestamp="1795772642",
        recovery_date="2026.11.27",
        recovery_time="10:44:02",
        subject="Resolved in 5m 50s: High CPU utilization (over 90% for 5m)",
        message="Problem resolved at 10:44:02 on 2026.11.27",
    )
    return body


@pytest.fixture
def integration(service):
    return make_integration("zabbix", service=service, auto_resolve=True, default_severity=4)


def send(client, capture, integration, body):
    headers = {"X-Vigil-Token": integration.secret}
    return post(client, hook_path(integration), body, capture=capture, **headers)


def test_problem_opens_an_incident_and_its_recovery_resolves_it(
    client, django_capture_on_commit_callbacks, integration
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, problem())
    assert response.status_code == 202, response.content
    assert response.json()["alerts"] == 1
    assert len(callbacks) == 1
    assert process_pending() == ["processed"]

    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.status, alert.severity_id) == ("48213", "firing", 2)
    assert alert.starts_at == STARTED and not alert.starts_at_estimated
    assert alert.annotations == {
        "description": "CPU utilization is too high. The system might be slow to respond.",
        "opdata": "Current utilization: 96.4 %",
        "url": LINK,
    }
    assert alert.labels == {
        "component": "cpu",
        "scope": "performance",
        "service": "checkout",
        "host": "db-1.prod",
        "host_ip": "10.0.4.21",
        "severity": "High",
        "trigger_id": "23712",
    }
    incident = Incident.objects.get()
    assert incident.title == "High CPU utilization (over 90% for 5m)"
    assert incident.severity_id == 2
    assert incident.impact_started_at == STARTED

    response, _ = send(client, django_capture_on_commit_callbacks, integration, recovery())
    assert response.status_code == 202, response.content
    process_pending()
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert (alert.status, alert.ends_at) == ("resolved", RECOVERED)
    assert incident.status == "monitoring"


def test_a_repeated_problem_is_one_alert(client, django_capture_on_commit_callbacks, integration):
    for _ in range(2):
        response, _ = send(client, django_capture_on_commit_callbacks, integration, problem())
        assert response.status_code == 202
    process_pending()
    alert = Alert.objects.get()
    assert alert.count == 2
    assert Incident.objects.count() == 1


def test_another_problem_of_the_same_trigger_joins_its_open_incident(
    client, django_capture_on_commit_callbacks, integration
):
    send(client, django_capture_on_commit_callbacks, integration, problem())
    again = problem()
    again["event_id"] = "48390"
    send(client, django_capture_on_commit_callbacks, integration, again)
    process_pending()
    assert Alert.objects.count() == 2
    assert Incident.objects.count() == 1


def test_before_zabbix_7_the_start_is_read_from_date_and_time_in_the_users_zone(
    client, django_capture_on_commit_callbacks, integration
):
    # Zabbix 6 has no {EVENT.TIMESTAMP}: the macro arrives as its text.
    body = problem()
    body["event_timestamp"] = "{EVENT.TIMESTAMP}"
    send(client, django_capture_on_commit_callbacks, integration, body)
    body = recovery(body)
    body["recovery_timestamp"] = "{EVENT.RECOVERY.TIMESTAMP}"
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    alert = Alert.objects.get()
    assert (alert.starts_at, alert.ends_at) == (STARTED, RECOVERED)
    assert Incident.objects.get().impact_started_at == STARTED


def test_an_unknown_time_zone_leaves_the_start_estimated(
    client, django_capture_on_commit_callbacks, integration
):
    body = problem()
    body.update(event_timestamp="{EVENT.TIMESTAMP}", event_timezone="Mars/Olympus_Mons")
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    alert = Alert.objects.get()
    assert alert.starts_at_estimated and alert.starts_at == alert.received_at
    assert Incident.objects.get().impact_started_at is None


@pytest.mark.parametrize(
    "nseverity, name, level",
    [
        ("5", "Disaster", 1),
        ("4", "High", 2),
        ("3", "Average", 3),
        ("2", "Warning", 4),
        ("1", "Information", 4),
        ("0", "Not classified", 4),
    ],
)
def test_zabbix_severities(
    client, django_capture_on_commit_callbacks, service, nseverity, name, level
):
    # Default Sev 3: only the Zabbix severity can give Sev 4.
    integration = make_integration("zabbix", service=service, default_severity=3)
    body = problem()
    body.update(severity=nseverity, severity_name=name)
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    alert = Alert.objects.get()
    assert (alert.severity_id, alert.labels["severity"]) == (level, name)
    assert Incident.objects.get().severity_id == level


def test_a_problem_update_is_stored_and_changes_no_alert(
    client, django_capture_on_commit_callbacks, integration
):
    send(client, django_capture_on_commit_callbacks, integration, problem())
    process_pending()
    update = problem()
    update.update(event_update_status="1", subject="Updated problem: acknowledged")
    response, _ = send(client, django_capture_on_commit_callbacks, integration, update)
    assert response.status_code == 202
    assert response.json()["alerts"] == 0
    assert process_pending() == ["processed"]
    assert WebhookDelivery.objects.count() == 2
    alert = Alert.objects.get()
    assert (alert.status, alert.count) == ("firing", 1)


def test_the_media_type_test_button_is_answered_and_not_stored(
    client, django_capture_on_commit_callbacks, integration
):
    # The Test form runs the script with the parameters as typed: every macro unresolved.
    from incidents.detection.senders.zabbix import PARAMETERS

    body = dict(PARAMETERS)
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "test" in response.json()["detail"]
    assert callbacks == [] and nothing_written()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"event_id": "abc"}, "event_id"),
        ({"event_id": None}, "event_id"),
        ({"event_value": "2"}, "event_value"),
        ({"event_value": "{EVENT.VALUE}"}, "event_value"),
        ({"event_source": "1"}, "event_source"),
        ({"severity": "9"}, "severity"),
        ({"tags": "not json"}, "tags"),
        ({"tags": [{"value": "no tag name"}]}, "tags"),
        ({"event_update_status": "2"}, "event_update_status"),
        ({"event_name": ["a list"]}, "event_name"),
    ],
)
def test_malformed_events_are_400_and_nothing_is_stored(
    client, django_capture_on_commit_callbacks, integration, change, field
):
    body = problem()
    body.update(change)
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert callbacks == [] and nothing_written()


@pytest.mark.parametrize("body", [[problem()], "a string", 48213], ids=["list", "text", "number"])
def test_a_body_that_is_not_an_object_is_400(
    client, django_capture_on_commit_callbacks, integration, body
):
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, integration, json.dumps(body)
    )
    assert response.status_code == 400
    assert callbacks == [] and nothing_written()


def _snippet(client, superuser, integration) -> str:
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
    assert page.status_code == 200
    found = re.search(r"<pre[^>]*>(.*?)</pre>", page.content.decode(), re.S)
    assert found, "no snippet on the page"
    return html.unescape(found.group(1))


@override_settings(VIGIL_BASE_URL="https://vigil.example.com")
def test_admin_page_shows_an_importable_media_type_with_url_and_secret(
    client, superuser, integration
):
    snippet = _snippet(client, superuser, integration)
    url = f"https://vigil.example.com/hooks/zabbix/{integration.key}/"
    assert url in snippet
    assert "X-Vigil-Token" in snippet
    media_type = yaml.safe_load(snippet[snippet.index("zabbix_export:") :])["zabbix_export"]
    (vigil,) = media_type["media_types"]
    assert (vigil["name"], vigil["type"]) == ("Vigil", "WEBHOOK")
    params = {p["name"]: p["value"] for p in vigil["parameters"]}
    assert params["vigil_url"] == url
    assert (params["vigil_auth"], params["vigil_token"]) == ("header", integration.secret)
    assert params["vigil_token_header"] == "X-Vigil-Token"
    assert params["event_id"] == "{EVENT.ID}" and params["tags"] == "{EVENT.TAGSJSON}"
    assert vigil["script"] == SCRIPT.read_text()
    # Every key of the sample is a parameter of the media type.
    assert set(problem()) <= set(params)


# Zabbix runs a media type's script as a function of ``value`` (the parameters as JSON) with
# its HttpRequest and Zabbix objects; these stand in for them and record what is posted.
HARNESS = """
const fs = require('fs');
const script = fs.readFileSync(process.argv[1], 'utf8');
const sent = {headers: [], url: null, body: null};
global.HttpRequest = function () {
  this.addHeader = (h) => sent.headers.push(h);
  this.setProxy = () => {};
  this.post = (url, body) => { sent.url = url; sent.body = body; return '{}'; };
  this.getStatus = () => 202;
};
global.Zabbix = {log: () => {}};
sent.result = new Function('value', script)(fs.readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(sent));
"""


def run_script(params: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is not installed: CI must run the media type's script")
        pytest.skip("Node.js is not installed: the media type's script is not run")
    done = subprocess.run(
        [node, "-e", HARNESS, str(SCRIPT)],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_shipped_script_posts_the_sample():
    # The parameters as Zabbix 7.0 resolves them for the sample's problem (tags as the text
    # {EVENT.TAGSJSON} resolves to), with the integration's URL and credential.
    sample = problem()
    params = {**sample, "tags": json.dumps(sample["tags"], separators=(",", ":"))}
    params.update(
        vigil_url="https://vigil.example.com/hooks/zabbix/k/",
        vigil_auth="header",
        vigil_token="s3cret",
        vigil_token_header="X-Vigil-Token",
    )
    sent = run_script(params)
    assert sent["result"] == "OK"
    assert sent["url"] == "https://vigil.example.com/hooks/zabbix/k/"
    assert sent["headers"] == ["Content-Type: application/json", "X-Vigil-Token: s3cret"]
    assert json.loads(sent["body"]) == sample
