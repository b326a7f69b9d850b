"""Nagios and Icinga 2 (/hooks/nagios/<key>/): the shipped notification command
(``incidents/detection/senders/contrib/vigil-notify``) run as Nagios and Icinga 2 run it,
against a live server, for a problem and its recovery; its retries against a server that
fails; and what the hook makes of each notification type, state and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.conf import settings

from incidents.models import Alert, Incident, Integration, WebhookDelivery
from tests.incidents.detection_fixtures import (
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    post,
    process_pending,
    vigil_headers,
)

SCRIPT = Path(settings.BASE_DIR) / "incidents/detection/senders/contrib/vigil-notify"


def notify(url: str, *args: str, secret: str = "", timeout: float = 60, **env: str):
    """Run the script as a notification command would (the secret in its environment)."""
    environment = {**os.environ, "VIGIL_SECRET": secret, **env}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


def nagios_service_args(notification_type: str, state: str, output: str, changed: int):
    """The arguments of the snippet's notify-service-by-vigil, macros expanded."""
    return [
        "--monitor",
        "nagios",
        "--type",
        notification_type,
        "--host",
        "db-1",
        "--host-address",
        "10.0.0.7",
        "--host-state",
        "UP",
        "--service",
        "PostgreSQL",
        "--service-state",
        state,
        "--service-output",
        output,
        "--long-output",
        "connections: 0\\nreplication: stopped",
        "--last-state-change",
        str(changed),
        "--problem-id",
        "4711" if notification_type == "PROBLEM" else "0",
        "--author",
        "",
        "--comment",
        "",
    ]


# --- the script against a live Vigil ------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_script_reports_a_problem_and_its_recovery(live_server, service):
    integration = make_integration("nagios", service=service, auto_resolve=True)
    url = live_server.url + hook_path(integration)
    started = int(time.time()) - 300

    done = notify(
        url,
        *nagios_service_args("PROBLEM", "CRITICAL", "-1 connections: refused", started),
        secret=integration.secret,
    )
    assert done.returncode == 0, done.stderr
    assert "delivered (202)" in done.stderr
    delivery = WebhookDelivery.objects.get()
    assert "X-Vigil-Timestamp" in delivery.headers
    process_pending()
    alert = Alert.objects.get()
    assert alert.fingerprint == "db-1/PostgreSQL"
    assert alert.status == "firing"
    assert alert.title == "PostgreSQL on db-1 CRITICAL: -1 connections: refused"
    assert alert.severity_id == 2
    assert int(alert.starts_at.timestamp()) == started and not alert.starts_at_estimated
    assert alert.labels == {
        "host": "db-1",
        "service": "PostgreSQL",
        "monitor": "nagios",
        "state": "CRITICAL",
        "host_address": "10.0.0.7",
    }
    assert alert.annotations["long_output"] == "connections: 0\nreplication: stopped"
    assert alert.annotations["problem_id"] == "4711"
    incident = Incident.objects.get()
    assert list(incident.services.all()) == [service]

    recovered = int(time.time()) - 10
    done = notify(
        url,
        *nagios_service_args("RECOVERY", "OK", "OK - 12 connections", recovered),
        secret=integration.secret,
    )
    assert done.returncode == 0, done.stderr
    process_pending()
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert int(alert.ends_at.timestamp()) == recovered
    incident.refresh_from_db()
    assert incident.status == "monitoring"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_script_as_icinga2_runs_it_with_the_static_header(live_server):
    integration = make_integration("nagios", auth="header", auth_header="X-Icinga-Token")
    url = live_server.url + hook_path(integration)
    # Icinga 2's $host.last_state_change$ has a fraction; its host states are UP and DOWN.
    changed = f"{time.time() - 60:.6f}"
    args = ["--auth", "header", "--header-name", "X-Icinga-Token", "--monitor", "icinga2"]
    args += ["--type", "PROBLEM", "--host", "web-1", "--host-state", "DOWN"]
    args += ["--host-output", "CRITICAL - Host Unreachable (10.0.0.8)"]
    args += ["--last-state-change", changed, "--author", "", "--comment", ""]

    wrong = notify(url, *args, secret="not-the-secret")
    assert wrong.returncode == 3, wrong.stderr
    assert "refused (401)" in wrong.stderr
    assert not WebhookDelivery.objects.exists()

    done = notify(url, *args, secret=integration.secret)
    assert done.returncode == 0, done.stderr
    process_pending()
    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.severity_id, alert.labels["monitor"]) == (
        "web-1",
        2,
        "icinga2",
    )
    assert alert.title == "web-1 DOWN: CRITICAL - Host Unreachable (10.0.0.8)"
    assert abs(alert.starts_at.timestamp() - float(changed)) < 0.01


def test_the_script_has_help_and_is_executable():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    shown = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0
    for word in ("--secret-file", "$NOTIFICATIONTYPE$", "$service.last_state_change$", "Exit"):
        assert word in shown.stdout


def test_the_script_refuses_to_run_without_a_secret_or_type(tmp_path):
    done = notify("http://127.0.0.1:9/", "--type", "PROBLEM", "--host", "h", "--host-state", "DOWN")
    assert done.returncode == 2 and "no secret" in done.stderr
    done = notify("http://127.0.0.1:9/", "--host", "h", secret="s")
    assert done.returncode == 2 and "--type" in done.stderr
    missing = tmp_path / "nope"
    done = notify(
        "http://127.0.0.1:9/", "--secret-file", str(missing), "--type", "PROBLEM", "--host", "h"
    )
    assert done.returncode == 2 and "cannot read the secret" in done.stderr


# --- retries, against a server that answers what the test says ------------------------------


class _Script(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[dict] = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append({"headers": dict(self.headers), "body": self.rfile.read(length)})
        status = self.answers.pop(0) if self.answers else 202
        payload = json.dumps({"status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    handler = type("Handler", (_Script,), {"answers": [], "seen": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_port}/hooks/nagios/k/"
    server.shutdown()
    server.server_close()


ARGS = ["--type", "PROBLEM", "--host", "h", "--host-state", "DOWN", "--backoff", "0.05"]


@pytest.mark.parametrize(
    ("answers", "code", "tries"),
    [
        ([503, 503, 503], 1, 3),  # out of tries: a non-zero exit for the monitor's log
        ([502, 500, 202], 0, 3),
        ([429, 202], 0, 2),
        ([500, 409], 0, 2),  # Vigil stored the first try after all: delivered
        ([401], 3, 1),  # refused: trying again would not help
        ([400], 3, 1),
    ],
)
def test_the_script_retries_server_errors_with_the_same_signed_request(stub, answers, code, tries):
    handler, url = stub
    handler.answers.extend(answers)
    done = notify(url, *ARGS, secret="s3cret")
    assert done.returncode == code, done.stderr
    assert len(handler.seen) == tries
    signatures = {seen["headers"]["X-Vigil-Signature"] for seen in handler.seen}
    assert len(signatures) == 1 and {seen["body"] for seen in handler.seen} == {
        handler.seen[0]["body"]
    }


def test_the_script_retries_when_nothing_answers():
    done = notify("http://127.0.0.1:9/hooks/nagios/k/", *ARGS, secret="s3cret")
    assert done.returncode == 1
    assert done.stderr.count("failed") == 3 and "not delivered after 3 tries" in done.stderr


# --- the hook, posted to directly ---------------------------------------------------------------


@pytest.fixture
def nagios(db):
    return make_integration("nagios")


def send(client, capture, integration: Integration, data):
    body = json.dumps(data).encode() if not isinstance(data, bytes) else data
    return post(
        client,
        hook_path(integration),
        body,
        capture=capture,
        **vigil_headers(integration.secret, body),
    )


SERVICE = {
    "version": 1,
    "notification_type": "PROBLEM",
    "host": "db-1",
    "service": "PostgreSQL",
    "service_state": "WARNING",
    "service_output": "WARNING - 180 connections",
}


@pytest.mark.usefixtures("at_now")
@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([SERVICE], "non_field_errors"),
        ({**SERVICE, "notification_type": "ALERT"}, "notification_type"),
        ({**SERVICE, "notification_type": None}, "notification_type"),
        ({**SERVICE, "host": " "}, "host"),
        ({**SERVICE, "host": ["db-1"]}, "host"),
        ({**SERVICE, "service": 7}, "service"),
        ({**SERVICE, "service_state": "BROKEN"}, "service_state"),
        ({**SERVICE, "service_state": None}, "service_state"),
        ({**SERVICE, "service": "", "service_state": "CRITICAL"}, "host_state"),
        ({**SERVICE, "service": None, "host_state": "CRITICAL"}, "host_state"),
        ({**SERVICE, "service_state": "OK"}, "service_state"),  # a PROBLEM that is OK
        ({**SERVICE, "notification_type": "RECOVERY"}, "service_state"),  # still WARNING
        ({**SERVICE, "monitor": "zabbix"}, "monitor"),
        ({**SERVICE, "version": 2}, "version"),
        ({**SERVICE, "service_output": {"text": "x"}}, "service_output"),
    ],
)
def test_bad_input_is_400_and_stores_nothing(
    client, django_capture_on_commit_callbacks, nagios, data, field
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, nagios, data)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert callbacks == []
    assert not WebhookDelivery.objects.exists()


@pytest.mark.usefixtures("at_now")
@pytest.mark.parametrize(
    "data",
    [
        {**SERVICE, "notification_type": "DOWNTIMESTART"},
        {**SERVICE, "notification_type": "DOWNTIMEREMOVED", "service_state": "OK"},
        {**SERVICE, "notification_type": "FLAPPINGSTOP"},
        {**SERVICE, "notification_type": "FlappingEnd"},  # Icinga 2's spelling
        {**SERVICE, "notification_type": "ACKNOWLEDGEMENT", "service_state": "OK"},
        {**SERVICE, "notification_type": "CUSTOM", "service_state": "OK"},
    ],
)
def test_notifications_that_say_nothing_about_a_failure_are_ignored(
    client, django_capture_on_commit_callbacks, nagios, data
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, nagios, data)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ignored"
    assert callbacks == [] and not WebhookDelivery.objects.exists()


@pytest.mark.usefixtures("at_now")
def test_unsigned_notifications_are_refused(client, django_capture_on_commit_callbacks, nagios):
    response, callbacks = post(
        client, hook_path(nagios), json.dumps(SERVICE), capture=django_capture_on_commit_callbacks
    )
    assert response.status_code == 401
    assert callbacks == [] and not WebhookDelivery.objects.exists()


@pytest.mark.usefixtures("at_now")
def test_an_acknowledgement_of_a_failing_check_is_a_repeat_of_its_alert(
    client, django_capture_on_commit_callbacks, nagios
):
    capture = django_capture_on_commit_callbacks
    assert send(client, capture, nagios, SERVICE)[0].status_code == 202
    ack = {**SERVICE, "notification_type": "ACKNOWLEDGEMENT", "author": "ana", "comment": "on it"}
    assert send(client, capture, nagios, ack)[0].status_code == 202
    flapping = {**SERVICE, "notification_type": "FLAPPINGSTART", "service_state": "CRITICAL"}
    assert send(client, capture, nagios, flapping)[0].status_code == 202
    process_pending()
    alert = Alert.objects.get()
    assert alert.status == "firing" and alert.count == 3
    assert alert.labels["state"] == "CRITICAL"  # the latest word on the check
    assert Incident.objects.count() == 1


@pytest.mark.usefixtures("at_now")
@pytest.mark.parametrize(
    ("state", "severity"),
    [("DOWN", 2), ("UNREACHABLE", 2), ("CRITICAL", 2), ("WARNING", 3), ("UNKNOWN", 3)],
)
def test_severity_follows_the_state(
    client, django_capture_on_commit_callbacks, nagios, state, severity
):
    if state in ("DOWN", "UNREACHABLE"):
        data = {**SERVICE, "service": None, "host_state": state.lower()}
    else:
        data = {**SERVICE, "service_state": state}
    response, _ = send(client, django_capture_on_commit_callbacks, nagios, data)
    assert response.status_code == 202, response.content
    process_pending()
    alert = Alert.objects.get()
    assert alert.severity_id == severity
    assert alert.starts_at_estimated  # no last_state_change given


@pytest.mark.usefixtures("at_now")
def test_the_snippet_has_both_monitors_with_the_url_and_secret(client, superuser, nagios):
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{nagios.pk}/change/").content.decode()
    for text in (
        f"/hooks/nagios/{nagios.key}/",
        nagios.secret,
        "define command",
        "notify-service-by-vigil",
        "$LASTSERVICESTATECHANGE$",
        "object NotificationCommand",
        "$service.last_state_change$",
        "--auth hmac",
    ):
        assert text in page, text
