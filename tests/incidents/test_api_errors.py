"""One error shape for every error, and the published schema that documents them."""

from __future__ import annotations

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

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
            if method == "post" and path.count("/") == 6 and "timeline" not in path:
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
