"""Brute force against the admin login and API tokens (§7.1): django-axes locks a username and
an address out after VIGIL_LOGIN_FAILURE_LIMIT failed logins for VIGIL_LOGIN_COOLOFF_MINUTES
(the right password is then refused too), an administrator can unlock in the admin or with
``manage.py axes_reset_username``; bad API tokens are refused with 429 per address past
VIGIL_API_TOKEN_FAILURE_LIMIT per window, without the token being checked. The failed-login
watch goes on counting every refused attempt and records the lockouts."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from unittest import mock

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client, override_settings
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.models import AuthToken
from rest_framework.test import APIClient

from incidents.models import AlertRule, DetectionSource, Incident, Kind, TimelineEntry
from incidents.services import security
from tests.factories import UserFactory
from tests.redis_server import redis_caches, redis_server

LOGIN = "/admin/login/"
API = "/api/v1/incidents/"
T0 = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)
PASSWORD = "vigil-test-pass"  # the factories' password
ATTACKER, OFFICE = "203.0.113.7", "198.51.100.23"
LOCKED = "Too many failed login attempts"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def maria(db):
    return UserFactory(username="maria", is_superuser=True)


@pytest.fixture
def tom(db):
    return UserFactory(username="tom", is_superuser=True)


def login(username: str, password: str, *, address: str = ATTACKER, **extra):
    client = Client()
    response = client.post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **extra,
    )
    return response, client


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(n: int, username: str = "maria", *, address: str = ATTACKER, **extra) -> list[int]:
    return [login(username, "guess", address=address, **extra)[0].status_code for _ in range(n)]


LIMIT = settings.AXES_FAILURE_LIMIT


def test_the_configured_limits():
    assert LIMIT == 10
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AXES_LOCKOUT_PARAMETERS == ["username", "ip_address"]


def test_wrong_passwords_lock_the_login_and_the_right_password_is_then_refused(maria):
    assert fail(LIMIT - 1) == [200] * (LIMIT - 1)  # the login form again, with its error
    assert fail(1) == [429]

    response, client = login("maria", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert LOCKED in page
    assert "try again in 15 minutes" in page
    assert "ask an administrator" in page
    assert not logged_in(client)


def test_below_the_limit_the_right_password_works(maria):
    fail(LIMIT - 1)
    response, client = login("maria", PASSWORD)
    assert response.status_code == 302 and logged_in(client)
    # A successful login clears the failures: the count starts again.
    assert fail(LIMIT - 1) == [200] * (LIMIT - 1)


def test_the_lock_ends_after_the_cool_off(maria):
    with time_machine.travel(T0, tick=False) as traveller:
        fail(LIMIT)
        traveller.shift(timedelta(minutes=14))
        assert fail(3) == [429] * 3
        assert login("maria", PASSWORD)[0].status_code == 429
        # Refused without a write: they neither extend the lock nor grow the record.
        assert AccessAttempt.objects.get().failures_since_start == LIMIT
        # 15 minutes from the failure that locked.
        traveller.shift(timedelta(minutes=1, seconds=1))
        response, client = login("maria", PASSWORD)
        assert response.status_code == 302 and logged_in(client)
    assert not AccessAttempt.objects.exists()  # a successful login clears the failures


def test_the_username_is_locked_from_every_address_and_the_address_for_every_username(maria, tom):
    fail(LIMIT, "maria", address=ATTACKER)

    assert login("maria", PASSWORD, address=OFFICE)[0].status_code == 429
    assert login("tom", PASSWORD, address=ATTACKER)[0].status_code == 429
    response, client = login("tom", PASSWORD, address=OFFICE)
    assert response.status_code == 302 and logged_in(client)


def test_an_address_trying_many_usernames_is_locked(maria, tom):
    statuses = [login(f"user{i}", "guess")[0].status_code for i in range(LIMIT)]
    assert statuses == [200] * (LIMIT - 1) + [429]
    assert login("tom", PASSWORD)[0].status_code == 429
    assert login("tom", PASSWORD, address=OFFICE)[0].status_code == 302


def test_locking_the_combination_only_leaves_other_addresses_and_usernames_alone(
    maria, tom, settings
):
    settings.AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
    fail(LIMIT, "maria", address=ATTACKER)
    assert login("maria", PASSWORD, address=ATTACKER)[0].status_code == 429
    assert login("maria", PASSWORD, address=OFFICE)[0].status_code == 302
    assert login("tom", PASSWORD, address=ATTACKER)[0].status_code == 302


def test_a_superuser_unlocks_in_the_admin(maria, tom):
    fail(LIMIT, "maria")
    admin = Client()
    admin.force_login(tom)
    listing = admin.get("/admin/axes/accessattempt/?locked_out=yes")
    assert listing.status_code == 200
    attempt = AccessAttempt.objects.get(username="maria")
    assert "Locked Out" in listing.content.decode()
    assert "/admin/axes/accessattempt/" in admin.get("/admin/").content.decode()

    response = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302
    response, client = login("maria", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_staff_without_the_permission_do_not_see_the_attempts(maria):
    fail(LIMIT, "maria")
    staff = Client()
    staff.force_login(UserFactory(username="im", groups=["Incident Manager"]))
    assert staff.get("/admin/axes/accessattempt/").status_code == 403


def test_axes_reset_username_unlocks(maria):
    fail(LIMIT, "maria")
    call_command("axes_reset_username", "maria", stdout=StringIO())
    response, client = login("maria", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_behind_the_configured_proxy_the_address_comes_from_x_forwarded_for(maria, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    AlertRule.objects.filter(key="failed_logins").update(threshold=Decimal(LIMIT))
    proxy = {"HTTP_X_FORWARDED_FOR": f"10.9.9.9, {ATTACKER}"}
    with time_machine.travel(T0, tick=False):
        statuses = [
            login(f"user{i}", "guess", address="10.0.0.5", **proxy)[0].status_code
            for i in range(LIMIT)
        ]
    assert statuses[-1] == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}
    # Another client through the same proxy is not locked out.
    response, client = login("maria", PASSWORD, address="10.0.0.5", HTTP_X_FORWARDED_FOR=OFFICE)
    assert response.status_code == 302 and logged_in(client)
    # The failed-login watch saw the same address as the lockout.
    incident = Incident.objects.get(detection_source=DetectionSource.SECURITY_MONITORING)
    assert f"Source addresses: {ATTACKER}\n" in incident.summary


def test_a_forwarded_address_that_is_not_one_does_not_break_the_login(maria, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    statuses = fail(LIMIT, "maria", address="10.0.0.5", HTTP_X_FORWARDED_FOR="not-an-address")
    assert statuses == [200] * (LIMIT - 1) + [429]
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [None]


def test_without_the_proxy_setting_x_forwarded_for_is_ignored(maria):
    fail(LIMIT, "maria", address="10.0.0.5", HTTP_X_FORWARDED_FOR=OFFICE)
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"10.0.0.5"}


def test_the_watch_counts_attempts_refused_by_the_lockout_and_records_the_lockouts(maria):
    AlertRule.objects.filter(key="failed_logins").update(threshold=Decimal(LIMIT + 5))
    with time_machine.travel(T0, tick=False):
        statuses = fail(LIMIT + 4)
        assert not Incident.objects.exists()
        # The right password, refused by the lockout, is a failed login too: the threshold.
        assert login("maria", PASSWORD)[0].status_code == 429

    incident = Incident.objects.get(detection_source=DetectionSource.SECURITY_MONITORING)
    assert statuses == [200] * (LIMIT - 1) + [429] * 5
    assert f"{LIMIT + 5} failed logins (admin login page {LIMIT + 5})" in incident.summary
    # The failure that reached the limit and each one after it (6) hit the lockout.
    assert "6 of them at or past the lockout limit" in incident.summary
    (entry,) = TimelineEntry.objects.filter(incident=incident, kind=Kind.ALERT)
    assert entry.data["locked_out"] == 6
    assert "6 at or past the lockout limit" in entry.message


# --- API tokens -----------------------------------------------------------------------------------
# The failures are counted by the shared rate limiter, which outlives a test (in the process's
# memory, or in Redis): each test uses addresses of its own and a moment of its own.

_moments = itertools.count()


@pytest.fixture
def here() -> tuple[str, str]:
    """Two addresses of this test's own."""
    prefix = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::"
    return str(ipaddress.ip_address(prefix + "7")), str(ipaddress.ip_address(prefix + "8"))


@pytest.fixture
def moment() -> datetime:
    return datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=next(_moments))


@pytest.fixture
def token(maria) -> str:
    return AuthToken.objects.create(user=maria)[1]


def api(key: str, address: str):
    return APIClient().get(API, HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=address)


def test_the_token_failure_limits():
    assert settings.VIGIL_API_TOKEN_FAILURE_LIMIT == 20
    assert settings.VIGIL_API_TOKEN_FAILURE_WINDOW_SECONDS == 300


def test_bad_tokens_from_one_address_get_429_after_the_limit(token, settings, here, moment):
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 5
    attacker, office = here
    with time_machine.travel(moment, tick=False) as traveller:
        assert [api(f"bogus{i}", attacker).status_code for i in range(5)] == [401] * 5
        with mock.patch.object(
            KnoxTokenAuthentication,
            "authenticate_credentials",
            side_effect=AssertionError("a throttled token must not be checked"),
        ):
            refused = api(token, attacker)  # even a good one: the address is not checked
        assert refused.status_code == 429
        body = refused.json()
        assert (body["status"], body["code"]) == (429, "throttled")
        assert "failed API token" in body["detail"]
        # Until the first failure leaves the 5-minute window.
        assert 299 <= int(refused["Retry-After"]) <= 301

        assert api(token, office).status_code == 200  # other addresses are not refused
        traveller.shift(timedelta(seconds=302))
        assert api(token, attacker).status_code == 200  # the window has moved on


def test_the_window_slides(token, settings, here, moment):
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 3
    attacker, _ = here
    with time_machine.travel(moment, tick=False) as traveller:
        assert api("bogus", attacker).status_code == 401
        traveller.shift(timedelta(seconds=200))
        assert [api("bogus", attacker).status_code for _ in range(2)] == [401, 401]
        refused = api(token, attacker)
        assert refused.status_code == 429
        assert 100 <= int(refused["Retry-After"]) <= 101  # the first failure leaves then
        traveller.shift(timedelta(seconds=102))
        assert api(token, attacker).status_code == 200
        # The window holds the failure counted at 200 s (the one that found it full was not
        # counted): two more reach the limit again.
        assert api("bogus", attacker).status_code == 401
        assert api(token, attacker).status_code == 200
        assert api("bogus", attacker).status_code == 401
        assert api(token, attacker).status_code == 429


def test_good_tokens_do_not_count(token, settings, here, moment):
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 3
    attacker, _ = here
    with time_machine.travel(moment, tick=False):
        for _ in range(3):
            assert api(token, attacker).status_code == 200
            assert api("bogus", attacker).status_code == 401
        assert api(token, attacker).status_code == 429


def test_requests_without_a_token_are_not_throttled_as_failures(db, settings, here):
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 2
    statuses = [APIClient().get(API, REMOTE_ADDR=here[0]).status_code for _ in range(5)]
    assert statuses == [401] * 5


def test_refused_tokens_are_failed_logins_for_the_watch(token, settings, here, moment):
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 5
    AlertRule.objects.filter(key="failed_logins").update(threshold=Decimal(12))
    attacker, _ = here
    with time_machine.travel(moment, tick=False):
        statuses = [api(f"bogus{i}", attacker).status_code for i in range(12)]
    assert statuses == [401] * 5 + [429] * 7
    incident = Incident.objects.get(detection_source=DetectionSource.SECURITY_MONITORING)
    assert "12 failed logins (API 12)" in incident.summary
    assert f"Source addresses: {attacker}\n" in incident.summary


@pytest.mark.redis
@pytest.mark.django_db
def test_a_cache_outage_lets_tokens_through(token, settings, here, caplog):
    """A real Redis, killed mid-test: refused tokens are 401 as before the limit (never a 429
    nor a 500), good ones are let in, and the limiter says so in the log."""
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 3
    attacker, _ = here
    with redis_server() as server, override_settings(CACHES=redis_caches(server.url)):
        assert [api("bogus", attacker).status_code for _ in range(2)] == [401, 401]
        server.kill()
        with caplog.at_level(logging.WARNING):
            after = [api("bogus", attacker).status_code for _ in range(3)]
            good = api(token, attacker).status_code
    assert after == [401] * 3
    assert good == 200
    assert any(r.name == "incidents.ratelimit" for r in caplog.records)


@pytest.mark.redis
@pytest.mark.django_db
def test_on_redis_the_count_is_shared_by_every_process(token, settings, here, moment):
    """Failures counted by one web process fill the window for all: another process (here,
    one that has refused nothing yet) refuses the address after one failure of its own."""
    settings.VIGIL_API_TOKEN_FAILURE_LIMIT = 4
    attacker, _ = here
    with time_machine.travel(moment, tick=False):
        assert [api("bogus", attacker).status_code for _ in range(4)] == [401] * 4
        assert api(token, attacker).status_code == 429
        security._blocked.clear()  # what another process knows: nothing
        assert api(token, attacker).status_code == 200
        assert api("bogus", attacker).status_code == 401
        assert api(token, attacker).status_code == 429
