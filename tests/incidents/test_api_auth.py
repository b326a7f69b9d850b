"""API authentication, role permissions and throttling."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.http import HttpRequest
from knox.models import AuthToken
from rest_framework.test import APIClient

from incidents.models import Incident


def _client(token: str | None = None) -> APIClient:
    client = APIClient()
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def api_as(db):
    def make(user) -> APIClient:
        _, token = AuthToken.objects.create(user=user)
        return _client(token)

    return make


def test_apitoken_command_prints_a_working_token_stored_only_hashed(incident_manager):
    out = StringIO()
    call_command("apitoken", "im", stdout=out, stderr=StringIO())
    token = out.getvalue().strip()

    stored = AuthToken.objects.get(user=incident_manager)
    assert token not in (stored.digest, stored.token_key)
    assert stored.expiry is None
    response = _client(token).get("/api/v1/incidents/")
    assert response.status_code == 200


def test_apitoken_command_expiry_and_revoke_all(incident_manager):
    call_command("apitoken", "im", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command(
        "apitoken", "im", "--revoke-all", "--expires-in-days", "30", stdout=out, stderr=StringIO()
    )
    (only,) = AuthToken.objects.filter(user=incident_manager)
    assert only.expiry is not None
    assert _client(out.getvalue().strip()).get("/api/v1/incidents/").status_code == 200


def test_apitoken_command_refuses_unknown_and_inactive_users(make_user):
    with pytest.raises(CommandError, match="No user"):
        call_command("apitoken", "nobody", stdout=StringIO())
    make_user("Technical Lead", username="gone", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        call_command("apitoken", "gone", stdout=StringIO())


def test_tokens_are_managed_in_the_admin():
    assert AuthToken in admin.site._registry


@pytest.mark.parametrize(
    "header",
    [None, "Token", "Token not-a-real-token", "Token a b", "Bearer abc"],
)
def test_requests_without_a_valid_token_get_401(db, header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/incidents/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    body = response.json()
    assert body["status"] == 401
    assert body["code"] in ("not_authenticated", "authentication_failed")


def test_a_revoked_token_stops_working(incident_manager):
    instance, token = AuthToken.objects.create(user=incident_manager)
    assert _client(token).get("/api/v1/incidents/").status_code == 200
    instance.delete()
    assert _client(token).get("/api/v1/incidents/").status_code == 401


def test_an_inactive_users_token_stops_working(incident_manager):
    _, token = AuthToken.objects.create(user=incident_manager)
    incident_manager.is_active = False
    incident_manager.save()
    assert _client(token).get("/api/v1/incidents/").status_code == 401


def test_session_authentication_works_for_the_browser(incident_manager, incident):
    client = APIClient(enforce_csrf_checks=True)
    # django-axes's backend needs the request a login comes with (the admin's login page
    # passes it; the test client's login() has none of its own).
    assert client.login(request=HttpRequest(), username="im", password="vigil-test-pass")
    assert client.get(f"/api/v1/incidents/{incident.number}/").status_code == 200
    # A browser session must carry the CSRF token to write.
    response = client.post(f"/api/v1/incidents/{incident.number}/acknowledge/", {}, format="json")
    assert response.status_code == 403


def test_a_user_without_a_role_group_reads_nothing(make_user, incident):
    client = APIClient()
    client.force_authenticate(make_user(username="nobody"))
    assert client.get("/api/v1/incidents/").status_code == 403
    assert client.get(f"/api/v1/incidents/{incident.number}/").status_code == 403


def test_viewer_reads_everything(api_as, viewer, incident, service):
    client = api_as(viewer)
    number = incident.number
    for path in (
        "/api/v1/incidents/",
        f"/api/v1/incidents/{number}/",
        f"/api/v1/incidents/{number}/timeline/",
        f"/api/v1/incidents/{number}/roles/",
        f"/api/v1/incidents/{number}/history/",
        "/api/v1/services/",
        "/api/v1/services/checkout/",
        "/api/v1/policy/severities/",
        "/api/v1/policy/severities/1/",
        "/api/v1/policy/priority-matrix/",
        "/api/v1/policy/priority-matrix/high/low/",
        "/api/v1/policy/roles/",
        "/api/v1/policy/roles/incident_manager/",
    ):
        assert client.get(path).status_code == 200, path


def test_viewer_cannot_write_anything(api_as, viewer, incident, service):
    client = api_as(viewer)
    number = incident.number
    writes = [
        ("post", "/api/v1/incidents/", {"title": "X", "severity": 2}),
        ("patch", f"/api/v1/incidents/{number}/", {"title": "X"}),
        ("patch", f"/api/v1/incidents/{number}/", {"severity": 1}),
        ("post", f"/api/v1/incidents/{number}/timeline/", {"body": "hello"}),
        ("put", f"/api/v1/incidents/{number}/roles/", {"incident_manager": "viewer"}),
        ("patch", f"/api/v1/incidents/{number}/roles/", {"incident_manager": None}),
        ("post", "/api/v1/services/", {"slug": "new", "name": "New"}),
        ("patch", "/api/v1/services/checkout/", {"name": "X"}),
        ("delete", "/api/v1/services/checkout/", None),
        ("patch", "/api/v1/policy/severities/1/", {"name": "X"}),
        ("patch", "/api/v1/policy/priority-matrix/high/high/", {"priority": 4}),
        ("patch", "/api/v1/policy/roles/incident_manager/", {"name": "X"}),
        *[
            ("post", f"/api/v1/incidents/{number}/{action}/", {"reason": "r", "resolution": "r"})
            for action in ("acknowledge", "investigate", "resolve", "cancel")
        ],
    ]
    history, timeline = Incident.history.count(), incident.timeline.count()
    for method, path, body in writes:
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 403, (method, path, response.json())
        assert response.json()["code"] in ("action_forbidden", "permission_denied")
    assert Incident.history.count() == history
    assert incident.timeline.count() == timeline


def test_throttling_is_per_token(settings, incident_manager, technical_lead):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "3/minute", "anon": "3/minute"},
    }
    _, first = AuthToken.objects.create(user=incident_manager)
    _, second = AuthToken.objects.create(user=incident_manager)
    client = _client(first)
    for _ in range(3):
        assert client.get("/api/v1/incidents/").status_code == 200
    response = client.get("/api/v1/incidents/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["code"] == "throttled"
    # Another token of the same user has its own budget.
    assert _client(second).get("/api/v1/incidents/").status_code == 200
