"""Vigil watching itself (§7.1, §7.2 "Failed Logins 100/minute → High → security team alert"):
failed logins to the admin login page and the API, counted per minute, open one security
incident per episode with the addresses and usernames seen."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from escalation.models import Notification
from incidents.events import INCIDENT_CREATED
from incidents.models import (
    AlertRule,
    DetectionSource,
    EscalationContact,
    Incident,
    IncidentEvent,
    Kind,
    LoginFailureEpisode,
    Source,
    Status,
    TimelineEntry,
)
from incidents.services import incident_transition
from incidents.services.security import login_failure_record
from tests.events import follow_events
from tests.factories import UserFactory

T0 = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)
ADMIN_LOGIN = "/admin/login/"
API = "/api/v1/incidents/"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def attack(db):
    """``attack(n, via="admin"|"api", addresses=[...], usernames=[...])``: n failed logins
    through the real login page or API, cycling over the addresses and usernames. Past the
    lockout limit (django-axes; VIGIL_API_TOKEN_FAILURE_LIMIT for tokens) the attempts are
    refused with 429 and still counted by the watch. Returns the statuses."""
    admin, api = Client(), APIClient()

    def run(n, *, via="admin", addresses=("203.0.113.7",), usernames=("admin",)):
        statuses = []
        for i in range(n):
            address = addresses[i % len(addresses)]
            if via == "admin":
                response = admin.post(
                    ADMIN_LOGIN,
                    {"username": usernames[i % len(usernames)], "password": "guess", "next": "/"},
                    REMOTE_ADDR=address,
                )
                page = response.content.decode()
                if response.status_code == 429:  # locked out
                    assert "Too many failed login attempts" in page
                else:  # the login form again, with its error
                    assert response.status_code == 200
                    assert "Please enter the correct username and password" in page
            else:
                response = api.get(
                    API, HTTP_AUTHORIZATION=f"Token bogus{i:040d}", REMOTE_ADDR=address
                )
                assert response.status_code in (401, 429)
            statuses.append(response.status_code)
        return statuses

    return run


def _security_incidents():
    return Incident.objects.filter(detection_source=DetectionSource.SECURITY_MONITORING)


def _alert_entries(incident: Incident) -> list[TimelineEntry]:
    return list(
        TimelineEntry.objects.filter(incident=incident, kind=Kind.ALERT, source=Source.SYSTEM)
    )


def test_99_failures_in_a_minute_open_nothing_and_the_100th_opens_one_incident(attack, settings):
    with time_machine.travel(T0, tick=False):
        statuses = attack(99)
        assert not _security_incidents().exists()
        assert not LoginFailureEpisode.objects.exists()
        attack(1)
        follow_events()  # what the dispatcher does once the request's transaction commits
    # One address and username: locked out after the limit, every attempt still counted.
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses == [200] * (limit - 1) + [429] * (99 - limit + 1)

    incident = _security_incidents().get()
    rule = AlertRule.objects.get(key="failed_logins")
    assert incident.severity_id == rule.severity_id == 2  # High (§7.2)
    assert incident.urgency == "high"
    assert incident.status == Status.OPEN
    assert incident.title == (
        "Failed logins over threshold: 100 in one minute (rule Failed Logins, 100 per minute)"
    )
    assert incident.impact_started_at == T0.replace(second=0)
    assert "Source addresses: 203.0.113.7" in incident.summary
    assert "Usernames tried: admin" in incident.summary
    # The security team contact is alerted by the escalation app, following the incident's
    # creation with "security" paging.
    created = IncidentEvent.objects.get(name=INCIDENT_CREATED)
    assert (created.incident, created.payload, created.actor_id, created.source) == (
        incident,
        {"paging": "security"},
        None,
        Source.SYSTEM,
    )
    security_contact = EscalationContact.objects.get(key="security_team").contact
    alerted = Notification.objects.filter(
        incident=incident, idempotency_key__startswith=f"security:{incident.pk}:"
    )
    assert alerted.exists()
    assert {n.contact for n in alerted} == {security_contact}
    (entry,) = _alert_entries(incident)
    assert (
        "reached the Failed Logins threshold (100 per minute): 100 in the minute" in entry.message
    )
    assert entry.data["addresses"] == ["203.0.113.7"]
    assert entry.data["by_channel"] == {"admin": 100}


def test_300_failures_still_one_incident_with_every_address_and_username(attack):
    addresses = ["203.0.113.7", "198.51.100.23", "2001:db8::42"]
    with time_machine.travel(T0, tick=False):
        attack(100, addresses=addresses[:2], usernames=["admin", "root"])
        attack(200, addresses=addresses, usernames=["admin", "root", "deploy", "im"])

    incident = _security_incidents().get()
    assert Incident.objects.count() == 1
    for value in [*addresses, "admin", "root", "deploy", "im"]:
        assert value in incident.summary
    assert "at least 300 failed logins in them" in incident.summary
    assert "action: security team alert" in incident.summary
    episode = LoginFailureEpisode.objects.get()
    assert (episode.incident, episode.windows, episode.failures, episode.peak) == (
        incident,
        1,
        300,
        300,
    )
    assert sorted(episode.addresses) == sorted(addresses)
    assert sorted(episode.usernames) == ["admin", "deploy", "im", "root"]
    entries = _alert_entries(incident)
    # Opened at 100, then an update for the new address and each new username, and at 200
    # and 300 failures: a handful of writes, not one per failure.
    assert 2 <= len(entries) <= 6
    assert "New source addresses: 2001:db8::42." in " ".join(e.message for e in entries)
    assert entries[-1].data["failures"] == 300


def test_admin_and_api_failures_count_together(attack):
    with time_machine.travel(T0, tick=False):
        attack(50, via="admin", addresses=["203.0.113.7"], usernames=["admin"])
        attack(49, via="api", addresses=["198.51.100.23"])
        assert not _security_incidents().exists()
        attack(1, via="api", addresses=["198.51.100.23"])

    incident = _security_incidents().get()
    # Refused with 429 past VIGIL_API_TOKEN_FAILURE_LIMIT (20), counted all the same.
    assert "(admin login page 50, API 50)" in incident.summary
    assert "203.0.113.7, 198.51.100.23" in incident.summary
    # API token failures have no username to list.
    assert "Usernames tried: admin\n" in incident.summary + "\n"


def test_failures_are_counted_per_minute(attack):
    with time_machine.travel(T0.replace(second=0), tick=False) as traveller:
        attack(60)
        traveller.shift(timedelta(seconds=59))
        attack(39)
        traveller.shift(timedelta(seconds=1))  # the next minute starts from zero
        attack(60)
    assert not _security_incidents().exists()


def test_another_minute_joins_the_active_incident_and_opens_a_new_one_after_it_resolves(
    attack,
):
    with time_machine.travel(T0, tick=False) as traveller:
        attack(100, addresses=["203.0.113.7"])
        first = _security_incidents().get()

        traveller.shift(timedelta(minutes=1))
        attack(120, addresses=["198.51.100.23"])
        assert _security_incidents().count() == 1
        episode = LoginFailureEpisode.objects.get()
        assert (episode.windows, episode.failures, episode.is_open) == (2, 200, True)
        first.refresh_from_db()
        assert "198.51.100.23" in first.summary
        assert "Another minute over the threshold" in _alert_entries(first)[1].message

        incident_transition(
            incident=first,
            action="resolve",
            actor=None,
            source=Source.SYSTEM,
            resolution="Blocked the addresses at the firewall.",
        )
        attack(50)  # the rest of this minute joins nothing and opens nothing
        assert _security_incidents().count() == 1

        traveller.shift(timedelta(minutes=1))
        attack(100, addresses=["192.0.2.99"])

    second = _security_incidents().exclude(pk=first.pk).get()
    assert second.status == Status.OPEN
    assert "192.0.2.99" in second.summary and "203.0.113.7" not in second.summary
    assert list(LoginFailureEpisode.objects.order_by("id").values_list("is_open", flat=True)) == [
        False,
        True,
    ]


def test_the_threshold_and_severity_are_the_alert_rules_as_edited_in_the_admin(
    attack, superuser, django_capture_on_commit_callbacks
):
    rule = AlertRule.objects.get(key="failed_logins")
    with time_machine.travel(T0, tick=False):
        attack(3)  # the watch has read (and cached) the seeded threshold, 100
        admin = Client()
        admin.force_login(superuser)
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.post(
                f"/admin/incidents/alertrule/{rule.pk}/change/",
                {
                    "name": rule.name,
                    "key": rule.key,
                    "description": rule.description,
                    "enabled": "on",
                    "position": rule.position,
                    "match_label": rule.match_label,
                    "match_values": json.dumps(rule.match_values),
                    "threshold": "5",
                    "unit": rule.unit,
                    "value_keys": json.dumps(rule.value_keys),
                    "severity": "1",
                    "action": rule.action,
                },
            )
        assert response.status_code == 302, response.context["adminform"].form.errors
        attack(1)
        assert not _security_incidents().exists()
        attack(1)  # the fifth failure of the minute
    incident = _security_incidents().get()
    assert incident.severity_id == 1
    assert incident.title.endswith("(rule Failed Logins, 5 per minute)")


def test_a_disabled_rule_opens_nothing(attack):
    AlertRule.objects.filter(key="failed_logins").update(enabled=False)
    with time_machine.travel(T0, tick=False):
        attack(150)
    assert not _security_incidents().exists()


def test_only_failed_logins_count(db):
    UserFactory(username="alice", is_superuser=True)
    _, token = AuthToken.objects.create(user=UserFactory(username="bot", is_superuser=True))
    AlertRule.objects.filter(key="failed_logins").update(threshold=Decimal("3"))
    admin, api = Client(), APIClient()
    with time_machine.travel(T0, tick=False):
        for _ in range(5):
            response = admin.post(
                ADMIN_LOGIN, {"username": "alice", "password": "vigil-test-pass", "next": "/"}
            )
            assert response.status_code == 302
            admin.logout()
            assert api.get(API, HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
            assert api.get(API).status_code == 401  # no credentials at all: not a login
    assert not _security_incidents().exists()


def test_a_broken_cache_never_breaks_the_login_page(attack, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "add", broken)
    with time_machine.travel(T0, tick=False):
        attack(3)  # the attack fixture asserts the normal refusal each time
        attack(3, via="api")
    assert not _security_incidents().exists()


def test_forwarded_addresses_are_trusted_only_behind_configured_proxies(db, settings):
    AlertRule.objects.filter(key="failed_logins").update(threshold=Decimal("2"))
    with time_machine.travel(T0, tick=False):
        Client().post(
            ADMIN_LOGIN,
            {"username": "x", "password": "y"},
            REMOTE_ADDR="10.0.0.5",
            HTTP_X_FORWARDED_FOR="1.2.3.4",
        )
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
        Client().post(
            ADMIN_LOGIN,
            {"username": "x", "password": "y"},
            REMOTE_ADDR="10.0.0.5",
            HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.8",
        )
    episode = LoginFailureEpisode.objects.get()
    assert episode.addresses == ["10.0.0.5", "198.51.100.8"]


# --- many processes at once: Redis counts, PostgreSQL guards the episode -------------------------


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.timeout(120)
def test_concurrent_failures_open_one_incident():
    threads_n, each = 8, 40  # 320 failures in one minute, crossing 100 somewhere in the middle
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    now = datetime.now(UTC).replace(second=1, microsecond=0)

    def work(n: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=10)
            for i in range(each):
                login_failure_record(
                    channel="admin" if n % 2 else "api",
                    address=f"203.0.113.{n}",
                    username=f"user{i % 3}",
                    now=now,
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    assert errors == []
    incident = _security_incidents().get()
    episode = LoginFailureEpisode.objects.get()
    assert episode.incident == incident
    assert cache.get(f"vigil:login-failures:{now:%Y%m%d%H%M}:count") == threads_n * each
    assert sorted(episode.addresses) == sorted(f"203.0.113.{n}" for n in range(threads_n))
    assert sorted(episode.usernames) == ["user0", "user1", "user2"]
