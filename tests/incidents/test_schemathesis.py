"""Property-based run of schemathesis against the published OpenAPI schema (/api/schema/).

Every operation gets generated requests (valid and invalid) through the WSGI app, as a
superuser with an API token, with about half of the path IDs pointed at real rows so writes
and transitions run too. Checks: no 5xx, every status code, content type and body as the
schema documents.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import re
import zlib
from urllib.parse import unquote

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import IncidentFactory, ServiceFactory, UserFactory
from tests.scoped_rows import scoped_rows


def _import_every_vigil_module() -> None:
    """Hypothesis also draws from the constants of the project's modules loaded at the time, so
    whichever modules earlier tests happened to load (run order, the xdist worker a test lands
    on) would change the requests generated. With all of them loaded first, what is generated
    depends on the code alone."""
    for name in ("config", "incidents", "escalation", "communications", "reviews"):
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            importlib.import_module(module.name)


_import_every_vigil_module()
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def keep_test_connection():
    """The WSGI app closes the database connection at the end of each request when it is in a
    transaction; the test's transaction must survive, as Django's own test client ensures."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _make_world() -> dict:
    root = UserFactory(username="fuzz-root", is_superuser=True)
    _, token = AuthToken.objects.create(user=root)
    ServiceFactory(slug="checkout", name="Checkout", customer_facing=True)
    ServiceFactory(slug="search", name="Search")
    incidents = [
        IncidentFactory(status=status, services=["checkout"])
        for status in ("open", "investigating", "resolved", "closed")
    ]
    return {
        "headers": {"Authorization": f"Token {token}"},
        "id": [incident.number for incident in incidents],
        "slug": ["checkout", "search"],
        "key": ["incident_manager", "technical_lead"],
    }


@pytest.fixture(scope="module")
def world_rows(django_db_setup, django_db_blocker):
    """Made once for every operation: each test's writes are rolled back after it, so every
    operation still starts from these rows exactly as made."""
    yield from scoped_rows(django_db_blocker, _make_world)


@pytest.fixture
def world(db, world_rows, settings, keep_test_connection):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": None, "anon": None},
    }
    return copy.deepcopy(world_rows)


def _point_at_real_rows(case, world) -> None:
    # Random IDs only ever reach 404; pointing half of them at real rows runs the writes too.
    for name, values in world.items():
        if name == "headers" or not case.path_parameters or name not in case.path_parameters:
            continue
        seed = zlib.crc32(repr(case.path_parameters[name]).encode())
        if seed % 2 == 0:
            case.path_parameters[name] = values[seed // 2 % len(values)]


def _routes_to_its_operation(case) -> bool:
    """False for generated path values that cannot address the operation at all (containing a
    "/" or empty): the URL router answers those before any API view exists to answer."""
    try:
        match = resolve(unquote(case.formatted_path))
    except Resolver404:
        return False
    template = "/" + re.sub(r"<\w+:(\w+)>", r"{\1}", match.route)
    return template == case.operation.path


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case, world):
    _point_at_real_rows(case, world)
    if not _routes_to_its_operation(case):
        return
    case.call_and_validate(headers=world["headers"], checks=CHECKS)
