"""Fixtures shared by every test: users in each role group, incidents made through services.

PostgreSQL- and Redis-only tests carry the ``postgres`` / ``redis`` markers. When those
services are not configured they are skipped with the reason, except when
``VIGIL_REQUIRE_SERVICES=1`` (the CI's PostgreSQL + Redis pass), where that is a failure.
"""

from __future__ import annotations

import os
import socket

import pytest
from django.conf import settings
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.factories import IncidentFactory, ServiceFactory, UserFactory

# The browser tests' fixtures (chromium, screenshots).
pytest_plugins = ["tests.browser"]

REQUIRE_SERVICES = os.environ.get("VIGIL_REQUIRE_SERVICES") == "1"


def _redis_reachable() -> bool:
    url = settings.REDIS_URL
    if not url:
        return False
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 2):
            return True
    except OSError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = []
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        missing.append("PostgreSQL (set DATABASE_URL=postgres://...)")
    if item.get_closest_marker("redis") and not _redis_reachable():
        missing.append("Redis (set REDIS_URL=redis://...)")
    if missing:
        reason = "needs " + " and ".join(missing)
        if REQUIRE_SERVICES:
            pytest.fail(reason + ", but VIGIL_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _memos_forgotten():
    """Each test starts with nothing kept in this process from an earlier test's rows (those
    rows were rolled back without the commit that moves the version token)."""
    from incidents.detection import intake
    from incidents.memo import memos_forget

    memos_forget()
    # Nor the time its web side last saw the delivery kick flag set.
    intake._flag_seen_at = 0.0
    yield


@pytest.fixture(autouse=True)
def _drain_budget_roomy(monkeypatch):
    """A drain in a test runs until no delivery is left, however slow a loaded machine makes
    it: tests that count its claims would otherwise see it stop at the half-second budget
    (a test of the budget passes ``budget_seconds``)."""
    from incidents.detection import processing

    monkeypatch.setattr(processing, "DRAIN_BUDGET", 60.0)


@pytest.fixture
def client():
    """Django's test client, routed as the WSGI application routes requests
    (tests/routed_client.py)."""
    from tests.routed_client import RoutedClient

    return RoutedClient()


@pytest.fixture
def make_user(db):
    def make(*groups: str, **kwargs):
        return UserFactory(groups=groups, **kwargs)

    return make


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_superuser=True)


@pytest.fixture
def incident_manager(make_user):
    return make_user("Incident Manager", username="im")


@pytest.fixture
def technical_lead(make_user):
    return make_user("Technical Lead", username="tl")


@pytest.fixture
def communications_lead(make_user):
    return make_user("Communications Lead", username="cl")


@pytest.fixture
def business_liaison(make_user):
    return make_user("Business Liaison", username="bl")


@pytest.fixture
def viewer(make_user):
    return make_user("Viewer", username="viewer")


@pytest.fixture
def service(db):
    return ServiceFactory(slug="checkout", name="Checkout", customer_facing=True)


@pytest.fixture
def make_incident(db):
    return IncidentFactory


@pytest.fixture
def incident(db):
    return IncidentFactory()


@pytest.fixture
def api_as(db):
    """``api_as(user)``: an API client authenticated with a fresh token of ``user``."""

    def make(user) -> APIClient:
        _, token = AuthToken.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    return make
