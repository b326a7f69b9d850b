"""/healthz, the watchdog: 200 while the sweeps run and the database, broker and cache answer,
503 otherwise, and never a 500. Anyone gets the status and one word per check; the details
(errors naming hosts and ports, ages, the outbox) need an API token or a staff session."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from config.celery import app
from escalation.health import ESCALATION_SWEEP_KEY, SLA_SWEEP_KEY
from escalation.models import Notification, NotificationStatus
from escalation.services import notification_enqueue

pytestmark = pytest.mark.django_db

URL = "/healthz"


@pytest.fixture(autouse=True)
def fresh_heartbeats():
    now = timezone.now().isoformat()
    cache.set(ESCALATION_SWEEP_KEY, now, timeout=None)
    cache.set(SLA_SWEEP_KEY, now, timeout=None)
    yield
    cache.delete_many([ESCALATION_SWEEP_KEY, SLA_SWEEP_KEY])


@pytest.fixture
def detailed(viewer):
    """A monitor with an API token (any role's): it gets the details."""
    _, token = AuthToken.objects.create(user=viewer)
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


ALL_OK = {
    "database": "ok",
    "broker": "ok",
    "cache": "ok",
    "escalation_sweep": "ok",
    "sla_sweep": "ok",
    "events": "ok",
}


def test_anonymous_callers_get_the_status_and_a_word_per_check(client):
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": ALL_OK}

    cache.delete(ESCALATION_SWEEP_KEY)
    response = client.get(URL)
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing",
        "checks": {**ALL_OK, "escalation_sweep": "never_ran"},
    }


def test_anonymous_callers_never_see_error_text(client, settings):
    """A broker that refuses: its address is in the error message, which only the details
    carry."""
    settings.VIGIL_HEALTH_BROKER_TIMEOUT_SECONDS = 1
    previous = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get(URL)
    finally:
        app.conf.broker_write_url = previous

    assert response.status_code == 503
    assert response.json() == {"status": "failing", "checks": {**ALL_OK, "broker": "unavailable"}}
    assert b"127.0.0.1" not in response.content


def test_staff_sessions_get_the_details_other_sessions_do_not(client, make_user):
    client.force_login(make_user("Viewer", username="staff", is_staff=True))
    assert "outbox" in client.get(URL).json()
    client.force_login(make_user("Viewer", username="not-staff", is_staff=False))
    assert client.get(URL).json() == {"status": "ok", "checks": ALL_OK}


def test_an_invalid_token_is_refused(client):
    response = client.get(URL, HTTP_AUTHORIZATION="Token not-a-valid-token")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert "checks" not in response.json()


def test_tokens_guessed_here_count_against_the_apis_per_address_budget(client, settings):
    """/healthz checks a token with the API's own authentication: bad tokens sent here fill
    the address's budget of refused tokens, after which it gets 429 here and in the API."""
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 3
    address = f"2001:db8:{uuid.uuid4().hex[:4]}::9"
    statuses = [
        client.get(URL, HTTP_AUTHORIZATION=f"Token guess-{n}", REMOTE_ADDR=address).status_code
        for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    refused = client.get(URL, HTTP_AUTHORIZATION="Token another", REMOTE_ADDR=address)
    assert refused.json()["code"] == "throttled" and int(refused["Retry-After"]) >= 1
    api = client.get("/api/v1/incidents/", HTTP_AUTHORIZATION="Token guess", REMOTE_ADDR=address)
    assert api.status_code == 429
    # Without a token the watchdog still answers that address.
    assert client.get(URL, REMOTE_ADDR=address).json()["checks"] == ALL_OK


def test_healthy(detailed):
    response = detailed.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["problems"] == []
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["cache"]["ok"] is True
    assert body["checks"]["escalation_sweep"]["age_seconds"] < 5
    assert {check["reason"] for check in body["checks"].values()} == {"ok"}
    assert body["outbox"] == {
        "pending": 0,
        "sending": 0,
        "oldest_pending_age_seconds": None,
        "failed_last_24h": 0,
    }
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_reports_the_outbox_backlog(detailed):
    with time_machine.travel(timezone.now() - timedelta(minutes=3)):
        notification_enqueue(
            incident=None,
            channel="email",
            recipient="im@example.org",
            subject="s",
            body="b",
            template="page",
            reason="test",
            idempotency_key="health:old",
        )
    failed = notification_enqueue(
        incident=None,
        channel="email",
        recipient="im@example.org",
        subject="s",
        body="b",
        template="page",
        reason="test",
        idempotency_key="health:failed",
    )
    Notification.objects.filter(pk=failed.pk).update(
        status=NotificationStatus.FAILED, failed_at=timezone.now()
    )

    outbox = detailed.get(URL).json()["outbox"]

    assert outbox["pending"] == 1
    assert outbox["failed_last_24h"] == 1
    assert 170 < outbox["oldest_pending_age_seconds"] < 200


def test_503_when_the_escalation_sweep_is_more_than_two_minutes_late(detailed):
    with time_machine.travel(timezone.now() + timedelta(seconds=110)):
        assert detailed.get(URL).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(seconds=130)):
        cache.set(SLA_SWEEP_KEY, timezone.now().isoformat(), timeout=None)
        response = detailed.get(URL)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert body["checks"]["escalation_sweep"]["ok"] is False
    assert body["checks"]["escalation_sweep"]["reason"] == "late"
    assert body["checks"]["sla_sweep"]["ok"] is True
    assert [p.split(":")[0] for p in body["problems"]] == ["escalation_sweep"]


def test_503_when_a_sweep_never_ran(detailed):
    cache.delete(ESCALATION_SWEEP_KEY)
    response = detailed.get(URL)
    assert response.status_code == 503
    assert "escalation_sweep: has never run" in response.json()["problems"]


def test_503_when_the_sla_sweep_stops(detailed):
    cache.set(SLA_SWEEP_KEY, (timezone.now() - timedelta(minutes=10)).isoformat(), timeout=None)
    response = detailed.get(URL)
    assert response.status_code == 503
    assert response.json()["checks"]["sla_sweep"]["ok"] is False


def test_503_when_the_database_is_unreachable(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    response = client.get(URL)

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"
    assert "events" not in response.json()["checks"]


def test_without_a_database_a_token_cannot_be_checked_and_gets_the_summary(detailed, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    response = detailed.get(URL)

    assert response.status_code == 503  # not a 401: the token may well be valid
    assert response.json()["checks"]["database"] == "unavailable"
    assert "problems" not in response.json()


def test_the_details_of_an_unreachable_database(detailed, monkeypatch):
    """The token is checked first; then the database goes away."""
    from escalation import health

    real = health.check_database

    def check_after_refusal():
        def refuse(*args, **kwargs):
            raise OperationalError("could not connect to server: Connection refused")

        monkeypatch.setattr(connection, "ensure_connection", refuse)
        return real()

    monkeypatch.setattr(health, "check_database", check_after_refusal)
    response = detailed.get(URL)

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == {
        "ok": False,
        "reason": "unavailable",
        "error": "OperationalError: could not connect to server: Connection refused",
    }
    assert body["outbox"] is None


def test_503_when_the_broker_is_unreachable(detailed, settings):
    settings.VIGIL_HEALTH_BROKER_TIMEOUT_SECONDS = 1
    previous = app.conf.broker_write_url
    # A port nothing listens on: the connection is refused at once.
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    try:
        response = detailed.get(URL)
    finally:
        app.conf.broker_write_url = previous

    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


def test_a_broker_that_never_answers_does_not_hang_the_watchdog(client, settings):
    settings.VIGIL_HEALTH_BROKER_TIMEOUT_SECONDS = 1
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are accepted by the kernel and then never answered
    previous = app.conf.broker_write_url
    app.conf.broker_write_url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    started = time.monotonic()
    try:
        response = client.get(URL)
    finally:
        app.conf.broker_write_url = previous
        silent.close()

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "unavailable"
    assert time.monotonic() - started < 5


def test_503_not_500_when_the_cache_is_down(detailed, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache server gone")

    monkeypatch.setattr(cache, "get", broken)
    response = detailed.get(URL)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["cache"] == {
        "ok": False,
        "reason": "unavailable",
        "error": "ConnectionError: cache server gone",
    }
    assert checks["escalation_sweep"]["reason"] == "unknown"
    assert "cache unreachable" in checks["escalation_sweep"]["error"]


def test_503_not_500_when_the_check_itself_breaks(client, detailed, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug in the watchdog")

    monkeypatch.setattr("escalation.health.health_report", broken)
    response = detailed.get(URL)
    assert response.status_code == 503
    assert response.json()["problems"] == ["RuntimeError: a bug in the watchdog"]
    anonymous = client.get(URL)
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "failing", "checks": {}}


def test_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/").status_code == 301
    assert client.get(URL).status_code == 200
    assert client.head(URL).status_code == 200
    assert client.post(URL).status_code == 405


def test_events_nobody_follows_fail_the_watchdog(detailed):
    """A committed incident whose events wait past the allowed age: no worker is following
    them (none running, or none consuming their queue), so nobody is being paged."""
    from incidents.models import Source
    from incidents.services import incident_create

    with time_machine.travel(timezone.now() - timedelta(minutes=3)):
        incident_create(actor=None, source=Source.SYSTEM, title="Nobody follows", severity=1)
    # The sweeps' heartbeats are fresh; the events are not followed.
    response = detailed.get(URL)

    assert response.status_code == 503
    events = response.json()["checks"]["events"]
    assert events["ok"] is False and events["unfinished"] == 1
    assert 170 < events["oldest_due_seconds"] < 200
    assert "waited" in events["error"]

    from tests.events import follow_events

    follow_events()
    assert detailed.get(URL).status_code == 200
