"""Every bad input to the webhooks gets its documented status and a JSON error, is logged, and
writes nothing: no delivery, no alert, no incident, no task queued."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from incidents.models import Alert, Incident, WebhookDelivery
from tests.incidents.detection_fixtures import (
    alertmanager_payload,
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    pagerduty_event,
    vigil_signature,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]
MiB = 1024 * 1024


@pytest.fixture
def am(db):
    return make_integration("alertmanager", secret="")


@pytest.fixture
def pd(db):
    return make_integration("pagerduty")


def send(client, capture, path, body, *, content_type="application/json", method="POST", **extra):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    with capture() as callbacks:
        response = client.generic(method, path, data, content_type=content_type, **extra)
    return response, callbacks


def assert_refused(response, callbacks, status, code, caplog):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"]
    assert callbacks == []
    assert not WebhookDelivery.objects.exists()
    assert not Alert.objects.exists() and not Incident.objects.exists()
    assert f"webhook: {status} {code}" in caplog.text


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_only_post(client, django_capture_on_commit_callbacks, am, method, caplog):
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, hook_path(am), {}, method=method
    )
    assert_refused(response, callbacks, 405, "method_not_allowed", caplog)
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_only_json(client, django_capture_on_commit_callbacks, am, content_type, caplog):
    response, callbacks = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(am),
        alertmanager_payload(),
        content_type=content_type,
    )
    assert_refused(response, callbacks, 415, "unsupported_media_type", caplog)


def test_json_with_charset_is_json(client, django_capture_on_commit_callbacks, am):
    response, _ = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(am),
        alertmanager_payload(),
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 202


def padded(size: int) -> bytes:
    body = json.dumps(alertmanager_payload()).encode()
    return body + b" " * (size - len(body))


def test_one_mebibyte_is_accepted(client, django_capture_on_commit_callbacks, am):
    response, _ = send(client, django_capture_on_commit_callbacks, hook_path(am), padded(MiB))
    assert response.status_code == 202


def test_declared_oversize_is_413_before_reading(
    client, django_capture_on_commit_callbacks, am, caplog
):
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, hook_path(am), padded(MiB + 1)
    )
    assert_refused(response, callbacks, 413, "payload_too_large", caplog)


def test_undeclared_oversize_is_413_on_the_bytes_read(
    client, django_capture_on_commit_callbacks, am, caplog
):
    # Chunked, no Content-Length: the size is found by reading at most 1 MiB + 1 byte.
    response, callbacks = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(am),
        padded(2 * MiB),
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    assert_refused(response, callbacks, 413, "payload_too_large", caplog)


@override_settings(VIGIL_HOOK_MAX_BODY_BYTES=100)
def test_the_limit_is_a_setting(client, django_capture_on_commit_callbacks, am, caplog):
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, hook_path(am), alertmanager_payload()
    )
    assert_refused(response, callbacks, 413, "payload_too_large", caplog)


@pytest.mark.parametrize(
    "path",
    [
        "/hooks/alertmanager/0123456789abcdef0123456789abcdef/",
        "/hooks/alertmanager/short/",
        "/hooks/alertmanager/%00%01abcdefabcdefabcdef/",
    ],
    ids=["unknown", "malformed", "control-characters"],
)
def test_unknown_key_is_404(client, django_capture_on_commit_callbacks, am, path, caplog):
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, path, alertmanager_payload()
    )
    assert_refused(response, callbacks, 404, "not_found", caplog)


def test_key_of_another_kind_is_404(client, django_capture_on_commit_callbacks, am, caplog):
    response, callbacks = send(
        client,
        django_capture_on_commit_callbacks,
        f"/hooks/grafana/{am.key}/",
        alertmanager_payload(),
    )
    assert_refused(response, callbacks, 404, "not_found", caplog)


def test_disabled_integration_is_403(client, django_capture_on_commit_callbacks, caplog):
    integration = make_integration("alertmanager", secret="", enabled=False)
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, hook_path(integration), alertmanager_payload()
    )
    assert_refused(response, callbacks, 403, "integration_disabled", caplog)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic dXNlcjpwYXNz", "Bearer", "bearer  "],
)
def test_alertmanager_bearer_is_checked(
    client, django_capture_on_commit_callbacks, authorization, caplog
):
    integration = make_integration("alertmanager")
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response, callbacks = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(integration),
        alertmanager_payload(),
        **extra,
    )
    assert_refused(response, callbacks, 401, "authentication_failed", caplog)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_credentials_are_checked_before_the_body_is_parsed(
    client, django_capture_on_commit_callbacks, caplog
):
    integration = make_integration("generic")
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, hook_path(integration), b"{not json"
    )
    assert_refused(response, callbacks, 401, "authentication_failed", caplog)


def test_generic_without_a_secret_refuses_everything(
    client, django_capture_on_commit_callbacks, caplog
):
    integration = make_integration("generic")
    # Only reachable by editing the row outside the services (they refuse an empty secret).
    type(integration).objects.filter(pk=integration.pk).update(secret="")
    body = json.dumps({"title": "x"}).encode()
    response, callbacks = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(integration),
        body,
        HTTP_X_VIGIL_SIGNATURE=vigil_signature("", body),
    )
    assert_refused(response, callbacks, 401, "authentication_failed", caplog)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"   ",
        b'{"version": "4", "alerts": [NaN]}',
        b'{"a": Infinity}',
        b"\xff\xfe{}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["broken", "blank", "nan", "infinity", "not-utf8", "deeply-nested"],
)
def test_malformed_json_is_400(client, django_capture_on_commit_callbacks, am, body, caplog):
    response, callbacks = send(client, django_capture_on_commit_callbacks, hook_path(am), body)
    assert_refused(response, callbacks, 400, "parse_error", caplog)


def _am(**changes):
    body = alertmanager_payload()
    body.update(changes)
    return body


def _am_alert(**changes):
    body = alertmanager_payload()
    body["alerts"][0].update(changes)
    return body


@pytest.mark.parametrize(
    "body, field",
    [
        ([], "non_field_errors"),
        ("text", "non_field_errors"),
        (_am(version="3"), "version"),
        (_am(alerts=[]), "alerts"),
        (_am(alerts={"a": 1}), "alerts"),
        (_am(alerts=["x"]), "alerts.0"),
        (_am(groupKey=7), "groupKey"),
        (_am_alert(status="pending"), "alerts.0.status"),
        (_am_alert(labels="alertname=x"), "alerts.0.labels"),
        (_am_alert(annotations={"a": [1]}), "alerts.0.annotations.a"),
        (_am_alert(fingerprint=""), "alerts.0.fingerprint"),
        (_am_alert(fingerprint="f" * 256), "alerts.0.fingerprint"),
    ],
)
def test_invalid_alertmanager_payload_is_400(
    client, django_capture_on_commit_callbacks, am, body, field, caplog
):
    response, callbacks = send(client, django_capture_on_commit_callbacks, hook_path(am), body)
    assert_refused(response, callbacks, 400, "invalid", caplog)
    assert field in response.json()["errors"]


def test_odd_strings_are_cleaned_not_refused(client, django_capture_on_commit_callbacks, am):
    body = _am_alert(annotations={"summary": "NUL \u0000 and \ud800 here"})
    response, _ = send(client, django_capture_on_commit_callbacks, hook_path(am), body)
    assert response.status_code == 202


# --- PagerDuty's own shape -------------------------------------------------------------------


def pd_send(client, capture, body, **extra):
    return send(client, capture, "/hooks/pagerduty/v2/enqueue", body, **extra)


def assert_pd_refused(response, callbacks, status, label):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == label
    assert body["message"]
    assert callbacks == [] and not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"routing_key": None}, "'routing_key' is missing or blank"),
        ({"routing_key": "0" * 32}, "Invalid routing key"),
        ({"event_action": None}, "'event_action' is missing or blank"),
        ({"event_action": "snooze"}, "'event_action' is invalid"),
        ({"payload": None}, "'payload' is missing or blank"),
        ({"payload": {"source": "db-1", "severity": "error"}}, "'payload.summary' is missing"),
        ({"payload": {"summary": "x", "severity": "error"}}, "'payload.source' is missing"),
        ({"payload": {"summary": "x", "source": "db-1"}}, "'payload.severity' is missing"),
        (
            {"payload": {"summary": "x", "source": "db-1", "severity": "fatal"}},
            "'payload.severity' is invalid",
        ),
        ({"event_action": "resolve", "dedup_key": None}, "'dedup_key' is missing or blank"),
        ({"dedup_key": "k" * 256}, "'dedup_key' is too long"),
        ({"links": [{"text": "no href"}]}, "'links' must be a list"),
        ({"images": "x.png"}, "'images' must be a list"),
    ],
)
def test_invalid_pagerduty_event_is_400_invalid_event(
    client, django_capture_on_commit_callbacks, pd, changes, error, caplog
):
    event = pagerduty_event(pd.key, **changes)
    event = {k: v for k, v in event.items() if v is not None}
    response, callbacks = pd_send(client, django_capture_on_commit_callbacks, event)
    assert_pd_refused(response, callbacks, 400, "invalid event")
    assert response.json()["message"] == "Event object is invalid"
    assert any(e.startswith(error) for e in response.json()["errors"]), response.json()
    assert "Refused pagerduty webhook: 400" in caplog.text


def test_pagerduty_disabled_is_403(client, django_capture_on_commit_callbacks):
    integration = make_integration("pagerduty", enabled=False)
    response, callbacks = pd_send(
        client, django_capture_on_commit_callbacks, pagerduty_event(integration.key)
    )
    assert_pd_refused(response, callbacks, 403, "forbidden")


@pytest.mark.parametrize(
    "body, extra, status",
    [
        (b"{broken", {}, 400),
        (b"{}", {"content_type": "text/plain"}, 415),
        (b"{}", {"method": "GET"}, 405),
        (b" " * (MiB + 1), {}, 413),
    ],
    ids=["malformed", "not-json", "get", "oversize"],
)
def test_pagerduty_transport_errors(
    client, django_capture_on_commit_callbacks, pd, body, extra, status
):
    response, callbacks = pd_send(client, django_capture_on_commit_callbacks, body, **extra)
    assert response.status_code == status
    assert "status" in response.json() and "message" in response.json()
    assert callbacks == [] and not WebhookDelivery.objects.exists()


@override_settings(VIGIL_PAGERDUTY_RATE="2/minute")
def test_pagerduty_rate_limit_is_429_with_retry_after(
    client, django_capture_on_commit_callbacks, pd, caplog
):
    event = pagerduty_event(pd.key)
    for _ in range(2):
        response, _ = pd_send(client, django_capture_on_commit_callbacks, event)
        assert response.status_code == 202
    response, callbacks = pd_send(client, django_capture_on_commit_callbacks, event)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["status"] == "throttle event"
    assert callbacks == []
    assert WebhookDelivery.objects.count() == 2
    # Per routing key: another integration is not held back.
    other = make_integration("pagerduty")
    response, _ = pd_send(client, django_capture_on_commit_callbacks, pagerduty_event(other.key))
    assert response.status_code == 202


def test_disabling_or_rotating_takes_effect_at_once_in_this_process(
    client, django_capture_on_commit_callbacks
):
    from incidents.detection.integrations import integration_rotate_secret, integration_update

    integration = make_integration("alertmanager")
    old = f"Bearer {integration.secret}"
    response, _ = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(integration),
        alertmanager_payload(),
        HTTP_AUTHORIZATION=old,
    )
    assert response.status_code == 202
    integration = integration_rotate_secret(integration=integration, actor=None, source="admin")
    response, _ = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(integration),
        alertmanager_payload(),
        HTTP_AUTHORIZATION=old,
    )
    assert response.status_code == 401
    integration_update(integration=integration, actor=None, source="admin", enabled=False)
    response, _ = send(
        client,
        django_capture_on_commit_callbacks,
        hook_path(integration),
        alertmanager_payload(),
        HTTP_AUTHORIZATION=f"Bearer {integration.secret}",
    )
    assert response.status_code == 403
