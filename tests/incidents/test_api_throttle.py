"""The API's rate limits: one budget per token (per user for sessions, per address for anonymous
callers), a sliding window counted atomically on Redis, and a cache outage that lets requests
through (with a warning and a failing ``cache`` check on /healthz) instead of failing them."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from escalation.health import ESCALATION_SWEEP_KEY, SLA_SWEEP_KEY
from tests.redis_server import redis_caches, redis_server

LIST = "/api/v1/incidents/"


def _rates(settings, token: str, anon: str = "120/minute") -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": token, "anon": anon},
    }


def _token_client(user) -> APIClient:
    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.mark.django_db
def test_the_window_slides_across_the_minute_boundary(settings, incident_manager):
    """A budget spent at 10:00:59 is still spent at 10:01:01: a fixed window would have
    let a second full budget through."""
    _rates(settings, "4/minute")
    client = _token_client(incident_manager)
    start = datetime(2026, 3, 2, 10, 0, 59, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        first = [client.get(LIST).status_code for _ in range(4)]
        traveller.move_to(start + timedelta(seconds=2))
        second = client.get(LIST)
        traveller.move_to(start + timedelta(seconds=61))
        later = client.get(LIST).status_code

    assert first == [200] * 4
    assert second.status_code == 429
    assert int(second["Retry-After"]) == 59  # the first second the oldest hit is out of it
    assert second.json()["code"] == "throttled"
    assert later == 200


@pytest.mark.django_db
def test_anonymous_callers_have_a_budget_per_address(settings):
    _rates(settings, "100/minute", anon="2/minute")
    # Addresses of this run's own: on Redis the budgets outlive the test.
    prefix = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::"
    here = Client(REMOTE_ADDR=prefix + "1")
    assert [here.get("/api/docs/").status_code for _ in range(2)] == [200, 200]
    refused = here.get("/api/docs/")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert Client(REMOTE_ADDR=prefix + "2").get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_an_empty_rate_means_no_limit(settings, incident_manager):
    _rates(settings, "")
    client = _token_client(incident_manager)
    assert {client.get(LIST).status_code for _ in range(5)} == {200}


@pytest.mark.redis
@pytest.mark.django_db
def test_the_api_answers_while_the_cache_is_down(incident_manager, caplog):
    """A real Redis, killed mid-test: the calls after the kill answer as before, a warning says
    the rate limits are not applied, and /healthz reports the cache."""
    with redis_server() as server, override_settings(CACHES=redis_caches(server.url)):
        now = timezone.now().isoformat()
        cache.set(ESCALATION_SWEEP_KEY, now, timeout=None)
        cache.set(SLA_SWEEP_KEY, now, timeout=None)
        api = _token_client(incident_manager)
        anonymous = Client()
        assert [api.get(LIST).status_code for _ in range(3)] == [200] * 3
        healthy = anonymous.get("/healthz")
        assert healthy.status_code == 200, healthy.json()
        assert healthy.json()["checks"]["cache"] == "ok"

        server.kill()
        with caplog.at_level(logging.WARNING):
            during = [api.get(LIST).status_code for _ in range(5)]
            docs = anonymous.get("/api/docs/").status_code
            # The failed-login watch cannot count a bad token: still a 401, not a 500.
            bad = APIClient()
            bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
            bad_token = bad.get(LIST).status_code
            health = anonymous.get("/healthz")

    assert during == [200] * 5
    assert docs == 200
    assert bad_token == 401
    warnings = [r for r in caplog.records if r.name == "incidents.ratelimit"]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert "not applied" in warnings[0].getMessage()
    assert health.status_code == 503
    assert health.json() == {
        "status": "failing",
        "checks": {
            "database": "ok",
            "broker": "ok",
            "cache": "unavailable",
            "escalation_sweep": "unknown",
            "sla_sweep": "unknown",
            "events": "ok",
        },
    }


@pytest.mark.redis
@pytest.mark.django_db
def test_the_admin_login_works_while_the_cache_is_down(make_user):
    make_user("Incident Manager", username="maria", password="right-password", is_staff=True)
    with redis_server() as server, override_settings(CACHES=redis_caches(server.url)):
        server.kill()
        wrong = Client().post(
            "/admin/login/", {"username": "maria", "password": "wrong", "next": "/admin/"}
        )
        right = Client().post(
            "/admin/login/", {"username": "maria", "password": "right-password", "next": "/admin/"}
        )
    assert wrong.status_code == 200  # the form again, with its error
    assert right.status_code == 302


@pytest.mark.django_db
def test_a_cache_that_never_answers_does_not_hold_requests(incident_manager, caplog):
    """A Redis that accepts connections and never answers: the first request waits for the
    limiter's short timeout, the next ones do not wait at all."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts; nobody ever answers
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    try:
        with override_settings(CACHES=redis_caches(url)):
            api = _token_client(incident_manager)
            started = time.monotonic()
            codes = [api.get(LIST).status_code for _ in range(8)]
            elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert codes == [200] * 8
    # One wait of STORAGE_TIMEOUT_SECONDS (0.5 s); a wait per request would be 4 s at least.
    assert elapsed < 3.5, elapsed


@pytest.mark.redis
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_clients_get_exactly_the_limit(settings, incident_manager):
    """16 clients sharing one token fire 5 requests each at once against a budget of 20:
    exactly 20 answers are 200, the other 60 are 429."""
    _rates(settings, "20/minute")
    _, token = AuthToken.objects.create(user=incident_manager)
    clients, each = 16, 5
    barrier = threading.Barrier(clients)

    def burst() -> list[int]:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            barrier.wait(timeout=30)
            return [api.get(LIST).status_code for _ in range(each)]
        finally:
            connection.close()

    with ThreadPoolExecutor(clients) as pool:
        codes = [
            code
            for result in [pool.submit(burst) for _ in range(clients)]
            for code in result.result()
        ]

    assert codes.count(200) == 20
    assert codes.count(429) == clients * each - 20
