"""A newcomer's first minutes with ``make run``: development mode recorded in ``var/`` (DEBUG's
default, the base URL following BIND and PORT) and production with ``DATABASE_URL`` untouched by
it; every ``manage.py`` command the README prints exists; the demo pages nobody about incidents
that are already over; pages and emails are one console line each in development; a favicon;
"View site" leads to the status page; Ctrl-C handling of ``make run``'s process runner."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core import mail
from django.core.cache import cache
from django.core.management import get_commands
from django.test import override_settings

from config import devrun
from escalation.channels import backend_for
from escalation.channels.log import ConsoleEmailBackend
from escalation.models import Notification
from escalation.services import notification_enqueue
from incidents.events import incident_events_follow
from incidents.management import demo
from incidents.models import Incident, IncidentEvent, Status

ROOT = Path(settings.BASE_DIR)
ENDED = (Status.RESOLVED, Status.CLOSED, Status.CANCELLED)
ACK_URL = "http://127.0.0.1:8123/ack/#eyJpIjoxfQ:1xZ6s9:abc-DEF_123"

# --- development mode -------------------------------------------------------------------------

SHOW = (
    "import json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'\n"
    "from django.conf import settings as s\n"
    "print(json.dumps([s.DEBUG, s.VIGIL_BASE_URL, s.EMAIL_BACKEND, s.DATABASES['default']"
    "['ENGINE']]))"
)


def _settings_in(var_dir: Path, development: str | None = None, **environ: str):
    """Vigil's settings as a fresh process in a checkout with ``var_dir`` reads them, with only
    ``environ`` of Vigil's variables set (none inherited from the test run)."""
    if development is not None:
        (var_dir / "development").write_text(development)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VIGIL_", "CELERY_"))
        and key not in ("DATABASE_URL", "REDIS_URL", "CI")
    }
    env.update(VIGIL_VAR_DIR=str(var_dir), **environ)
    return subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def _values(process) -> list:
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


MAKE_RUN = "# Written by make run\nBIND=127.0.0.1\nPORT=8123\n"


def test_a_make_run_checkout_is_in_development_mode_at_its_address(tmp_path):
    debug, base_url, email, engine = _values(_settings_in(tmp_path, MAKE_RUN))
    assert debug is True
    assert base_url == "http://127.0.0.1:8123"
    assert email == "escalation.channels.log.ConsoleEmailBackend"
    assert engine == "config.sqlite"  # Django's SQLite backend, fairer to requests


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("0.0.0.0", "http://localhost:9000"),
        ("::1", "http://[::1]:9000"),
        ("", "http://127.0.0.1:9000"),
    ],
)
def test_the_base_url_follows_bind_and_port(tmp_path, bind, expected):
    assert _values(_settings_in(tmp_path, f"BIND={bind}\nPORT=9000\n"))[1] == expected


def test_explicit_settings_win_over_the_checkout(tmp_path):
    base_url = "https://vigil.example.com"
    assert _values(_settings_in(tmp_path, MAKE_RUN, VIGIL_BASE_URL=base_url))[:2] == [
        True,
        base_url,
    ]
    off = _settings_in(tmp_path, MAKE_RUN, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 50)
    assert _values(off)[:2] == [False, "http://localhost:8000"]


def test_production_with_database_url_is_not_made_development_by_the_file(tmp_path):
    url = "postgres://vigil:secret@db.invalid:5432/vigil"
    # No secret key: production refuses to start, as without the file.
    refused = _settings_in(tmp_path, MAKE_RUN, DATABASE_URL=url)
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off" in refused.stderr
    debug, base_url, email, engine = _values(
        _settings_in(tmp_path, MAKE_RUN, DATABASE_URL=url, DJANGO_SECRET_KEY="k" * 50)
    )
    assert (debug, base_url) == (False, "http://localhost:8000")
    assert email == "django.core.mail.backends.smtp.EmailBackend"
    assert engine == "django.db.backends.postgresql"


def test_without_make_run_the_defaults_are_production_ones(tmp_path):
    refused = _settings_in(tmp_path)
    assert "DJANGO_SECRET_KEY must be set" in refused.stderr
    assert _values(_settings_in(tmp_path, DJANGO_SECRET_KEY="k" * 50))[:2] == [
        False,
        "http://localhost:8000",
    ]


def test_make_run_records_its_address_before_anything_starts():
    dry = subprocess.run(
        ["make", "-n", "run", "PORT=8123", "BIND=127.0.0.1", "VIGIL_VAR_DIR=/tmp/vigil-var"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    commands = dry.stdout
    assert "'127.0.0.1' '8123' > /tmp/vigil-var/development" in commands
    assert commands.index("/development") < commands.index("manage.py migrate")
    assert "python -m config.devrun --port 8123" in commands


def test_every_manage_py_command_the_readme_prints_exists():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"manage\.py ([a-z_]+)", readme))
    assert {"apitoken", "demo_data", "migrate", "check"} <= named
    assert sorted(named - set(get_commands())) == []


# --- the demo pages nobody about what is over -------------------------------------------------


@pytest.mark.django_db
def test_the_demo_pages_nobody_about_incidents_already_over():
    with override_settings(DEBUG=True):
        demo.load()
    incidents = list(Incident.objects.all())
    # What the workers do first when make run starts them: follow every incident's events.
    for incident in incidents:
        incident_events_follow(incident_id=incident.pk)
    assert not IncidentEvent.objects.filter(status__in=["pending", "running", "failed"]).exists()
    ended = [i for i in incidents if i.status in ENDED]
    assert {i.status for i in ended} == set(ENDED)
    # A page carries an acknowledge link; what an ended incident still sends is not one (its
    # post-incident review request, say).
    pages = Notification.objects.exclude(ack_url="")
    assert not pages.filter(incident__in=ended).exists()
    assert not Notification.objects.filter(
        incident__in=ended, channel__in=["sms", "phone", "slack", "teams"]
    ).exists()
    # The open ones are paged as before.
    open_sev1 = Incident.objects.get(title__startswith="Card payments fail")
    assert Notification.objects.filter(
        incident=open_sev1, reason="Sev 1 incident logged", channel="phone"
    ).exists()


# --- one console line per page and per email --------------------------------------------------


@pytest.mark.django_db
def test_a_page_is_one_console_line(settings, incident, caplog):
    settings.VIGIL_CHANNEL_BACKENDS = {"sms": "escalation.channels.log.LogBackend"}
    notification = notification_enqueue(
        incident=incident,
        channel="sms",
        recipient="+14155550101",
        subject=f"[Sev 1] {incident.number} {incident.title}",
        body="A long body\n" * 40,
        template="escalation/page",
        reason="Sev 1 incident logged",
        idempotency_key="newcomer:sms",
        ack_url=ACK_URL,
    )
    with caplog.at_level(logging.INFO, logger="vigil.notifications"):
        assert backend_for("sms").send(notification) == f"log-{notification.pk}"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "vigil.notifications"]
    assert line == (f"[sms] to +14155550101: {incident.number} {incident.title} · ack {ACK_URL}")


def test_an_email_is_one_console_line():
    stream = io.StringIO()
    message = mail.EmailMultiAlternatives(
        subject="[Sev 1] INC-2026-1203-004 Card payments fail at checkout",
        body=f"Card payments fail.\n\nAcknowledge (one click, then confirm): {ACK_URL}\n" * 2,
        to=["maria@example.com"],
    )
    message.attach_alternative("<p>Whole HTML</p>" * 100, "text/html")
    message.attach("invite.ics", "BEGIN:VCALENDAR", "text/calendar")
    assert ConsoleEmailBackend(stream=stream).send_messages([message]) == 1
    assert stream.getvalue() == (
        "[email] to maria@example.com: [Sev 1] INC-2026-1203-004 Card payments fail at "
        f"checkout · ack {ACK_URL} · 1 file(s)\n"
    )


# --- favicon and "View site" ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_favicon_is_served(client, superuser):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/incidents/favicon.svg"
    icon = Path(finders.find("incidents/favicon.svg")).read_text()
    assert icon.startswith("<svg") and "viewBox" in icon
    client.force_login(superuser)
    page = client.get("/admin/").content.decode()
    assert '<link rel="icon" href="/static/incidents/favicon.svg" type="image/svg+xml">' in page


@pytest.mark.django_db
def test_the_status_page_carries_the_favicon(client):
    cache.clear()
    page = client.get("/status/")
    assert page.status_code == 200
    assert '<link rel="icon" href="favicon.svg" type="image/svg+xml">' in page.content.decode()
    icon = client.get("/status/favicon.svg")
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"".join(icon).startswith(b"<svg")
    form = client.get("/status/subscribe/").content.decode()
    assert '<link rel="icon" href="/status/favicon.svg" type="image/svg+xml">' in form


@pytest.mark.django_db
def test_view_site_leads_to_the_status_page(client, superuser):
    client.force_login(superuser)
    page = client.get("/admin/").content.decode()
    assert '<a href="/status/">View site</a>' in page


# --- make run's process runner ----------------------------------------------------------------


class _Process:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd


def _runner(monkeypatch) -> tuple[devrun.Manager, list[tuple[str, int, int]]]:
    sent: list[tuple[str, int, int]] = []
    monkeypatch.setattr(devrun.os, "kill", lambda pid, sig: sent.append(("kill", pid, sig)))
    monkeypatch.setattr(devrun.os, "killpg", lambda pid, sig: sent.append(("killpg", pid, sig)))
    manager = devrun.Manager(printer=_Quiet())
    procfile = (ROOT / "Procfile").read_text().splitlines()
    for pid, line in enumerate(procfile, start=100):
        name, _, cmd = line.partition(":")
        manager._processes[name] = {"obj": _Process(cmd.strip()), "pid": pid}
    return manager, sent


class _Quiet:
    width = 0

    def write(self, message) -> None:
        pass


def test_ctrl_c_stops_celery_workers_and_gunicorn_alone_the_rest_as_a_terminal_does(monkeypatch):
    manager, sent = _runner(monkeypatch)
    manager.returncode = 130  # as honcho's SIGINT handler sets it before terminate()
    manager.terminate()
    assert manager.stop_requested
    by_pid = {pid: (how, sig) for how, pid, sig in sent}
    names = {p["pid"]: name for name, p in manager._processes.items()}
    assert {names[pid]: value for pid, value in by_pid.items()} == {
        "web": ("kill", signal.SIGTERM),  # gunicorn's graceful shutdown
        "urgent": ("kill", signal.SIGTERM),
        "worker": ("kill", signal.SIGTERM),
        "beat": ("killpg", signal.SIGINT),
    }
    sent.clear()
    manager.kill()
    assert {(how, sig) for how, _pid, sig in sent} == {("killpg", signal.SIGKILL)}


def test_a_process_that_stops_by_itself_is_not_a_stop_asked_for(monkeypatch):
    manager, _sent = _runner(monkeypatch)
    manager._processes["web"]["returncode"] = 1
    manager.terminate()
    assert not manager.stop_requested
