"""The WSGI application gunicorn serves (config.wsgi): webhooks through the short middleware
chain, everything else through the site's; each process imports its modules before it serves."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from config.handlers import is_hook_path
from incidents.models import WebhookDelivery
from tests.incidents.detection_fixtures import alertmanager_payload, hook_path, make_integration

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _test_connection_kept():
    """As Django's test client does: the request's start and end must not close the test's
    connection (it holds the test's transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def call(method: str, path: str, body: bytes = b"", **headers: str):
    """One request through ``config.wsgi.application``; returns (status, headers, body)."""
    from config.wsgi import application

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else f"HTTP_{key}"] = value
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started["status"] = int(status.split()[0])
        started["headers"] = response_headers

    with _test_connection_kept():
        response = application(environ, start_response)
        try:
            content = b"".join(response)
        finally:
            response.close()
    return started["status"], started["headers"], content


def post_alert(integration, path: str | None = None):
    """The sample Alertmanager notification, as Alertmanager sends it to ``integration``."""
    return call(
        "POST",
        path or hook_path(integration),
        json.dumps(alertmanager_payload()).encode(),
        content_type="application/json",
        authorization=f"Bearer {integration.secret}",
    )


def header_names(headers) -> set[str]:
    return {name.lower() for name, _ in headers}


def header(headers, name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name.lower()), None)


@pytest.mark.parametrize(
    ("path", "hook"),
    [
        ("/hooks/alertmanager/abc/", True),
        ("/hooks/pagerduty/v2/enqueue", True),
        ("/v2/enqueue", True),
        ("/v2/enqueue/", False),
        ("/hooksx/alertmanager/abc/", False),
        ("/api/v1/incidents/", False),
        ("/admin/", False),
        ("/status/", False),
    ],
)
def test_hook_paths(path, hook):
    assert is_hook_path(path) is hook


@pytest.mark.django_db(transaction=False)
def test_an_alert_is_accepted_through_the_hooks_chain(service, django_assert_max_num_queries):
    integration = make_integration("alertmanager", service=service)
    with django_assert_max_num_queries(2):  # the integration's lookup, the delivery's INSERT
        status, headers, content = post_alert(integration)
    assert status == 202, content
    assert WebhookDelivery.objects.filter(integration=integration).count() == 1
    # The security headers stay; nothing of a browser's session is set or varied on.
    assert header(headers, "X-Content-Type-Options") == "nosniff"
    assert header(headers, "X-Frame-Options") == "DENY"
    assert "set-cookie" not in header_names(headers)
    assert "cookie" not in (header(headers, "Vary") or "").lower()


@pytest.mark.django_db
def test_hook_errors_keep_the_json_shape(service):
    integration = make_integration("alertmanager", service=service)
    status, _, content = call(
        "POST",
        "/hooks/alertmanager/" + "k" * 32 + "/",
        b"{}",
        content_type="application/json",
    )
    assert status == 404
    assert json.loads(content)["code"] == "not_found"
    status, _, content = call("POST", "/hooks/nowhere/at/all/", b"{}")
    assert (status, json.loads(content)["code"]) == (404, "not_found")
    status, _, content = call(
        "POST", hook_path(integration), b"<xml/>", content_type="application/xml"
    )
    assert (status, json.loads(content)["code"]) == (415, "unsupported_media_type")
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_a_server_error_in_a_hook_is_json_and_logged(service, caplog):
    integration = make_integration("alertmanager", service=service)
    with mock.patch(
        "incidents.detection.views.delivery_accept", side_effect=RuntimeError("disk full")
    ):
        status, _, content = post_alert(integration)
    assert status == 500
    assert json.loads(content)["code"] == "server_error"
    assert "disk full" not in content.decode()
    assert any("disk full" in str(record.exc_info) for record in caplog.records)


@pytest.mark.django_db
def test_the_site_keeps_its_whole_chain():
    status, headers, content = call("GET", "/admin/login/")
    assert status == 200, content[:300]
    cookies = [value for name, value in headers if name.lower() == "set-cookie"]
    assert any(cookie.strip().startswith("csrftoken=") for cookie in cookies)
    assert header(headers, "X-Frame-Options") == "DENY"


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter with nothing reachable: no database, broker or Redis
    answers, so a warm-up that connected would fail or hang."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VIGIL_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "1",
            "VIGIL_VAR_DIR": str(ROOT / "var" / "test"),
            "DATABASE_URL": "postgres://nobody@127.0.0.1:9/nowhere",
            "REDIS_URL": "redis://127.0.0.1:9/0",
            "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


LOADED = (
    "import sys; wanted = ['config.urls', 'incidents.tasks', 'escalation.tasks', "
    "'incidents.detection.processing', 'escalation.services.delivery', 'redis', "
    "'kombu.transport.redis']; print([m for m in wanted if m not in sys.modules])"
)


def test_a_web_worker_imports_its_modules_before_it_serves():
    done = _fresh_python(f"import config.wsgi; {LOADED}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_a_celery_worker_imports_its_modules_before_its_pool_starts():
    done = _fresh_python(
        "import django; django.setup(); from config.celery import worker_warm_up; "
        f"worker_warm_up(sender=None); {LOADED}"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


@pytest.mark.django_db
def test_a_hook_url_without_its_trailing_slash_says_so(service):
    integration = make_integration("alertmanager", service=service)
    path = hook_path(integration).rstrip("/")
    status, _, content = post_alert(integration, path)
    error = json.loads(content)
    assert (status, error["code"]) == (404, "not_found")
    assert error["detail"] == f"Not found: this path needs its trailing slash ({path}/)."
    assert not WebhookDelivery.objects.exists()
