"""One error shape for every error, and the published schema that documents them."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from incidents.models import Incident
from tests.factories import IncidentFactory

SHAPE = {"status", "code", "detail", "errors"}


@pytest.fixture
def im_api(db, incident_manager):
    _, token = AuthToken.objects.create(user=incident_manager)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) >= SHAPE, body
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    "raw",
    ['{"title": "x", ', "[1, 2", "not json", '{"title": NaN, "severity": 1}', "\xff\xfe"],
)
def test_malformed_json_is_400(im_api, raw):
    response = im_api.generic(
        "POST", "/api/v1/incidents/", raw.encode("latin-1"), content_type="application/json"
    )
    _error(response, 400, "parse_error")


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "text",
        42,
        None,
        {"title": ["a"], "severity": 1},
        {"title": "x", "severity": {"level": 1}},
        {"title": "x", "severity": 1, "services": [1, {}]},
        {"title": "x", "severity": 1, "customer_facing": "perhaps"},
        {"title": "x", "severity": 1, "detected_at": 12},
        {"title": "x", "severity": 1, "roles": "im"},
    ],
)
def test_wrong_types_are_400_never_500(im_api, payload):
    body = _error(im_api.post("/api/v1/incidents/", payload, format="json"), 400, "invalid")
    assert body["errors"]
    assert all(isinstance(messages, list) for messages in body["errors"].values())


def test_nested_field_errors_are_named_by_path(im_api):
    body = _error(
        im_api.post(
            "/api/v1/incidents/",
            {"title": "x", "severity": 1, "services": ["ok", "not a slug"]},
            format="json",
        ),
        400,
        "invalid",
    )
    assert "services.1" in body["errors"]


def test_401_403_404_405_409_415(im_api, viewer):
    incident = IncidentFactory(status="closed")
    _error(APIClient().get("/api/v1/incidents/"), 401, "not_authenticated")

    _, token = AuthToken.objects.create(user=viewer)
    as_viewer = APIClient()
    as_viewer.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    _error(
        as_viewer.post(f"/api/v1/incidents/{incident.number}/reopen/", {}, format="json"),
        403,
        "action_forbidden",
    )
    _error(im_api.get("/api/v1/incidents/INC-1999-0101-001/"), 404, "not_found")
    _error(im_api.delete(f"/api/v1/incidents/{incident.number}/"), 405, "method_not_allowed")
    body = _error(
        im_api.post(f"/api/v1/incidents/{incident.number}/resolve/", {}, format="json"),
        409,
        "transition_not_allowed",
    )
    assert body["allowed_actions"] == []
    _error(
        im_api.generic(
            "POST",
            "/api/v1/incidents/",
            "title=x&severity=1",
            content_type="application/x-www-form-urlencoded",
        ),
        415,
        "unsupported_media_type",
    )


def test_guard_failure_names_the_missing_fields(im_api):
    incident = IncidentFactory(status="resolved")
    body = _error(
        im_api.post(f"/api/v1/incidents/{incident.number}/close/", {}, format="json"),
        400,
        "guard_failed",
    )
    assert set(body["missing_fields"]) == {"root_cause", "business_impact"}


def test_parameters_an_action_does_not_take_are_ignored_not_500(im_api):
    incident = IncidentFactory()
    response = im_api.post(
        f"/api/v1/incidents/{incident.number}/acknowledge/", {"reason": "x"}, format="json"
    )
    assert response.status_code == 200


# --- the schema ----------------------------------------------------------------------------------


@pytest.fixture
def schema(db):
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_documents_every_endpoint(schema):
    paths = set(schema["paths"])
    expected = {
        "/api/v1/incidents/",
        "/api/v1/incidents/{id}/",
        "/api/v1/incidents/{id}/timeline/",
        "/api/v1/incidents/{id}/roles/",
        "/api/v1/incidents/{id}/history/",
        "/api/v1/services/",
        "/api/v1/services/{slug}/",
        "/api/v1/policy/severities/",
        "/api/v1/policy/severities/{level}/",
        "/api/v1/policy/priority-matrix/",
        "/api/v1/policy/priority-matrix/{urgency}/{impact}/",
        "/api/v1/policy/roles/",
        "/api/v1/policy/roles/{key}/",
        *(
            f"/api/v1/incidents/{{id}}/{action}/"
            for action in (
                "acknowledge",
                "investigate",
                "mitigate",
                "monitor",
                "resolve",
                "reopen",
                "close",
                "cancel",
            )
        ),
    }
    assert expected <= paths
    assert "knoxApiToken" in schema["components"]["securitySchemes"]


def test_schema_documents_every_error_response(schema):
    for path, operations in schema["paths"].items():
        if not path.startswith(("/api/v1/incidents", "/api/v1/services", "/api/v1/policy")):
            continue
        if path.endswith(("/notifications/", "/escalations/")):
            continue  # the escalation app's endpoints
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401", "403", "404", "405", "429"} <= codes, (method, path)
            if method in ("post", "put", "patch"):
                assert "415" in codes, (method, path)
            # The lifecycle actions (POST /api/v1/incidents/{id}/<action>/); adding to an
            # incident's timeline, drafting a status update, writing a stakeholder note or
            # sending one now is not a transition.
            adds = ("/timeline/", "/status-updates/", "/stakeholder-notes/", "/stakeholder-sends/")
            if method == "post" and path.count("/") == 6 and not path.endswith(adds):
                assert "409" in codes, (method, path)
            error = operation["responses"]["404"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}


def test_docs_page_is_served(db):
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_docs_page_loads_swagger_ui_from_vigils_own_static_files(db):
    page = APIClient().get("/api/docs/").content.decode()

    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn.jsdelivr.net" not in page


# --- errors Django answers before or around DRF: the same shape under /api/ and /hooks/ ----------

BIG = 3 * 1024 * 1024  # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) and the hooks' 1 MiB


def _big_json() -> bytes:
    return json.dumps({"title": "x" * BIG, "severity": 1}).encode()


@pytest.mark.parametrize("path", ["/api/v1/incidents/", "/api/v1/reports/"])
def test_a_body_over_the_request_size_limit_is_a_json_413_and_writes_nothing(im_api, path, caplog):
    response = im_api.generic("POST", path, _big_json(), content_type="application/json")

    body = _error(response, 413, "payload_too_large")
    assert "2621440 bytes" in body["detail"]
    assert not Incident.objects.exists()
    assert "Traceback" not in caplog.text


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_the_api_size_limit_is_djangos_setting(api_as, superuser):
    small_but_too_big = json.dumps({"name": "x" * 2000, "kind": "generic"}).encode()
    response = api_as(superuser).generic(
        "POST", "/api/v1/integrations/", small_but_too_big, content_type="application/json"
    )

    _error(response, 413, "payload_too_large")


def test_hooks_refuse_a_body_over_the_request_size_limit_in_their_own_shape(db):
    from tests.incidents.detection_fixtures import make_integration

    generic = make_integration("generic")
    client = APIClient()
    response = client.generic(
        "POST", f"/hooks/generic/{generic.key}/", _big_json(), content_type="application/json"
    )
    _error(response, 413, "payload_too_large")
    pagerduty = client.generic(
        "POST", "/hooks/pagerduty/v2/enqueue", _big_json(), content_type="application/json"
    )
    assert (pagerduty.status_code, pagerduty["Content-Type"]) == (413, "application/json")
    assert pagerduty.json()["status"] == "payload too large"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here/",
        "/api/nothing",
        "/api/v2/incidents/",
        "/api/v1/incidents/INC-2026-0101-001/nothing/",
        "/hooks/nothing/",
        "/hooks/generic/",
    ],
)
def test_unknown_paths_under_api_and_hooks_are_a_json_404(im_api, path):
    body = _error(im_api.get(path), 404, "not_found")
    assert body["errors"] == {}


def test_unknown_paths_elsewhere_keep_djangos_html_404(client, superuser):
    client.force_login(superuser)
    for path in ("/admin/incidents/nothing-here/", "/nothing-here/"):
        response = client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")


def test_method_not_allowed_is_json_with_allow(im_api):
    for path in ("/api/schema/", "/hooks/generic/0123456789abcdef0123/"):
        response = im_api.put(path, {}, format="json")
        _error(response, 405, "method_not_allowed")
        assert response["Allow"]


@pytest.fixture
def broken_list(monkeypatch):
    from incidents.api.incidents import IncidentListView

    def get(self, request, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(IncidentListView, "get", get)


def test_a_server_error_under_api_is_a_json_500(im_api, broken_list, caplog):
    im_api.raise_request_exception = False

    body = _error(im_api.get("/api/v1/incidents/"), 500, "server_error")

    assert "a bug" not in body["detail"]  # nothing of the exception leaks
    assert "RuntimeError: a bug" in caplog.text  # it is logged, with its traceback


def test_a_server_error_in_the_admin_keeps_the_html_page(client, superuser, monkeypatch):
    from incidents.admin.incident import IncidentAdmin

    def get_queryset(self, request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(IncidentAdmin, "get_queryset", get_queryset)
    client.force_login(superuser)
    client.raise_request_exception = False

    response = client.get("/admin/incidents/incident/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


def test_a_suspicious_request_under_api_is_a_json_400(db):
    # Django refuses a Host header outside DJANGO_ALLOWED_HOSTS before any view runs.
    response = APIClient().get("/api/v1/incidents/", HTTP_HOST="evil.example")

    _error(response, 400, "bad_request")
