"""Per-integration authentication on the keyed hooks: every scheme each kind may choose
(``ALLOWED_AUTH``) lets the right credential in (202) and keeps a wrong or missing one out
(401, nothing stored), behind the URL key (a wrong one is a 404); the API and the admin refuse
a scheme the kind's sender cannot present, a scheme needing a secret without one, and header
names that carry something else."""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from incidents.detection.parsing import PayloadError
from incidents.detection.senders import PARSERS, SenderTest, load
from incidents.detection.views import SENDER_KINDS
from incidents.models import Integration, IntegrationAuth, IntegrationKind, WebhookDelivery
from incidents.models.detection import ALLOWED_AUTH, DEFAULT_AUTH
from tests.incidents.detection_fixtures import (
    PAYLOADS,
    alertmanager_payload,
    at_now,  # noqa: F401
    grafana_payload,
    grafana_signature,
    hook_path,
    make_integration,
    post,
    vigil_headers,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

KEYED_KINDS = [
    IntegrationKind.ALERTMANAGER,
    IntegrationKind.GRAFANA,
    IntegrationKind.GENERIC,
    *sorted(SENDER_KINDS),
]
CASES = [(kind, scheme) for kind in KEYED_KINDS for scheme in ALLOWED_AUTH[kind]]
# Blank: the kind's default scheme.
CASES += [(kind, "") for kind in KEYED_KINDS]

# Bodies each sender's parser is expected to take as one firing alert; the first one the
# parser accepts is used (a sender's own test payloads, ``payloads/<kind>*.json``, come after).
SAMPLES: dict[str, list[Any]] = {
    IntegrationKind.DATADOG: [
        {
            "alert_id": "1234567",
            "alert_transition": "Triggered",
            "alert_title": "Disk almost full on web-1",
            "alert_priority": "P2",
            "alert_scope": "host:web-1",
            "aggreg_key": "abc123",
            "hostname": "web-1",
            "tags": "env:prod,service:checkout",
            "date": "1795772400000",
            "title": "[Triggered on {host:web-1}] Disk almost full on web-1",
            "body": "Disk usage 93%",
            "id": "1234567890",
            "event_type": "query_alert_monitor",
        }
    ],
    IntegrationKind.NEWRELIC: [
        {
            "issueId": "c0ffee00-1111-2222-3333-444455556666",
            "issueUrl": "https://one.newrelic.com/alerts-ai/issues/c0ffee00",
            "title": "Checkout error rate above 5%",
            "priority": "CRITICAL",
            "state": "ACTIVATED",
            "createdAt": 1795772400000,
            "updatedAt": 1795772400000,
            "sources": ["newrelic"],
            "entitiesData": {"names": ["checkout"], "ids": ["MTIzfEFQTXxB"]},
            "accumulations": {"conditionName": ["Error rate"], "policyName": ["Checkout"]},
        }
    ],
    IntegrationKind.NAGIOS: [
        {
            "version": 1,
            "monitor": "nagios",
            "notification_type": "PROBLEM",
            "host": "db-1",
            "service": "PostgreSQL",
            "service_state": "CRITICAL",
            "service_output": "CRITICAL - connection refused",
            "last_state_change": 1795772400,
        }
    ],
    IntegrationKind.ZABBIX: [
        {
            "event_id": "4711",
            "event_value": "1",
            "event_name": "High CPU utilization on web-1",
            "event_severity": "High",
            "event_nseverity": "4",
            "event_date": "2026.11.27",
            "event_time": "09:40:00",
            "event_tags": "service:checkout",
            "host_name": "web-1",
            "host_ip": "10.0.0.7",
            "trigger_id": "13500",
            "trigger_name": "High CPU utilization",
            "trigger_status": "PROBLEM",
            "event_status": "PROBLEM",
            "event_update_status": "0",
            "alert_subject": "Problem: High CPU utilization on web-1",
            "alert_message": "CPU 97%",
        }
    ],
    IntegrationKind.SPLUNK: [
        {
            "sid": "scheduler__admin__search__RMD5_at_1795772400_1",
            "search_name": "Checkout errors",
            "app": "search",
            "owner": "admin",
            "results_link": "https://splunk.example.com/app/search/@go?sid=x",
            "result": {"host": "web-1", "count": "42", "_time": "1795772400"},
        }
    ],
    IntegrationKind.ELASTIC: [
        {
            "rule": {"id": "rule-1", "name": "Checkout errors", "url": ""},
            "alert": {"id": "web-1", "actionGroup": "query matched", "uuid": "a-1"},
            "context": {"title": "Checkout errors above threshold", "message": "42 errors"},
            "state": "active",
            "status": "firing",
            "date": "2026-11-27T09:40:00.000Z",
        }
    ],
}


def _fires(kind: str, body: Any) -> bool:
    try:
        parsed = PARSERS[kind](copy.deepcopy(body))
    except (PayloadError, SenderTest, ValueError, TypeError, KeyError):
        return False
    return bool(parsed.alerts)


def body_for(kind: str) -> bytes:
    """A valid body of ``kind``; skips the test while the kind's parser has not landed."""
    if kind == IntegrationKind.ALERTMANAGER:
        return json.dumps(alertmanager_payload()).encode()
    if kind == IntegrationKind.GRAFANA:
        return json.dumps(grafana_payload()).encode()
    if kind == IntegrationKind.GENERIC:
        return json.dumps({"title": "Checkout error rate above 5%"}).encode()
    load()
    assert kind in PARSERS, f"no parser registered for {kind} (incidents/detection/senders/)"
    candidates = list(SAMPLES.get(kind, []))
    for path in sorted(Path(PAYLOADS).glob(f"{kind}*.json")):
        candidates.append(json.loads(path.read_text()))
    for candidate in candidates:
        if _fires(kind, candidate):
            return json.dumps(candidate).encode()
    raise AssertionError(f"none of the sample bodies is a firing {kind} alert for its parser")


def credential(integration: Integration, body: bytes, *, secret: str | None = None) -> dict:
    """The headers the integration's sender sends (with ``secret`` instead, for a wrong one)."""
    secret = integration.secret if secret is None else secret
    scheme = integration.effective_auth
    if scheme == IntegrationAuth.HMAC and integration.kind == IntegrationKind.GRAFANA:
        timestamp = str(int(time.time()))
        return {
            "X-Grafana-Alerting-Signature": grafana_signature(secret, body, timestamp),
            "X-Grafana-Alerting-Signature-Timestamp": timestamp,
        }
    if scheme == IntegrationAuth.HMAC:
        return vigil_headers(secret, body)
    if scheme == IntegrationAuth.BEARER:
        return {"Authorization": f"Bearer {secret}"}
    if scheme == IntegrationAuth.BASIC:
        return {"Authorization": "Basic " + base64.b64encode(f"vigil:{secret}".encode()).decode()}
    if scheme == IntegrationAuth.HEADER:
        return {integration.auth_header: secret}
    return {}


def _integration(kind: str, scheme: str) -> Integration:
    fields: dict[str, Any] = {"auth": scheme}
    if scheme == IntegrationAuth.HEADER:
        fields["auth_header"] = "X-Monitor-Key"
    return make_integration(kind, **fields)


@pytest.mark.parametrize(("kind", "scheme"), CASES, ids=[f"{k}-{s or 'default'}" for k, s in CASES])
def test_the_right_credential_is_accepted_and_a_wrong_or_missing_one_refused(
    client, django_capture_on_commit_callbacks, kind, scheme
):
    body = body_for(kind)
    integration = _integration(kind, scheme)
    expected = scheme or DEFAULT_AUTH[kind]
    assert integration.effective_auth == expected
    path = hook_path(integration)
    capture = django_capture_on_commit_callbacks

    if expected != IntegrationAuth.URL_KEY:
        wrong = credential(integration, body, secret=integration.secret + "x")
        for headers in (wrong, {}):
            response, callbacks = post(client, path, body, capture=capture, **headers)
            assert response.status_code == 401, (headers.keys(), response.content)
            assert response.json()["code"] == "authentication_failed"
            if expected == IntegrationAuth.BEARER:
                assert response["WWW-Authenticate"].startswith("Bearer ")
            elif expected == IntegrationAuth.BASIC:
                assert response["WWW-Authenticate"].startswith("Basic ")
            else:
                assert "WWW-Authenticate" not in response
            assert callbacks == []
        assert not WebhookDelivery.objects.exists()

    wrong_key = path.replace(integration.key, "f" * len(integration.key))
    response, _ = post(client, wrong_key, body, capture=capture, **credential(integration, body))
    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()

    response, callbacks = post(client, path, body, capture=capture, **credential(integration, body))
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    assert WebhookDelivery.objects.get().integration == integration
    # The credential is never stored with the delivery.
    stored = json.dumps(WebhookDelivery.objects.get().headers)
    assert integration.secret not in stored and "Authorization" not in stored


def test_basic_needs_the_vigil_user_and_a_well_formed_header(
    client, django_capture_on_commit_callbacks
):
    integration = make_integration("generic", auth="basic")
    body = b'{"title": "Backup late"}'
    path = hook_path(integration)
    for value in (
        "Basic " + base64.b64encode(f"admin:{integration.secret}".encode()).decode(),
        "Basic " + base64.b64encode(integration.secret.encode()).decode(),
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"vigil:\xff").decode(),
        f"Bearer {integration.secret}",
    ):
        response, _ = post(
            client, path, body, capture=django_capture_on_commit_callbacks, Authorization=value
        )
        assert response.status_code == 401, value
        assert response["WWW-Authenticate"].startswith("Basic ")
    assert not WebhookDelivery.objects.exists()


def test_the_static_header_is_read_under_its_configured_name_only(
    client, django_capture_on_commit_callbacks
):
    integration = make_integration("generic", auth="header", auth_header="X-Alert-Token")
    body = b'{"title": "Backup late"}'
    path = hook_path(integration)
    capture = django_capture_on_commit_callbacks
    response, _ = post(client, path, body, capture=capture, **{"X-Vigil-Token": integration.secret})
    assert response.status_code == 401
    assert "X-Alert-Token" in response.json()["detail"]
    response, _ = post(client, path, body, capture=capture, **{"x-alert-token": integration.secret})
    assert response.status_code == 202


def test_changing_the_scheme_takes_effect_on_the_next_delivery(
    api_as, superuser, client, django_capture_on_commit_callbacks
):
    integration = make_integration("generic")
    body = b'{"title": "Backup late"}'
    path = hook_path(integration)
    capture = django_capture_on_commit_callbacks
    response = api_as(superuser).patch(
        f"/api/v1/integrations/{integration.pk}/", {"auth": "bearer"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["auth"] == "bearer"
    signed = vigil_headers(integration.secret, body)
    response, _ = post(client, path, body, capture=capture, **signed)
    assert response.status_code == 401
    bearer = {"Authorization": f"Bearer {integration.secret}"}
    response, _ = post(client, path, body, capture=capture, **bearer)
    assert response.status_code == 202


# --- validation -------------------------------------------------------------------------------

DISALLOWED = [
    (kind, scheme)
    for kind in [*KEYED_KINDS, IntegrationKind.PAGERDUTY, IntegrationKind.CLOUDWATCH]
    for scheme in IntegrationAuth.values
    if scheme not in ALLOWED_AUTH[kind]
]


@pytest.mark.parametrize(("kind", "scheme"), DISALLOWED, ids=[f"{k}-{s}" for k, s in DISALLOWED])
def test_api_refuses_a_scheme_the_kind_cannot_use(api_as, superuser, kind, scheme):
    response = api_as(superuser).post(
        "/api/v1/integrations/", {"name": "x", "kind": kind, "auth": scheme}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert "auth" in response.json()["errors"]
    assert not Integration.objects.exists()


def test_allowed_schemes_match_the_kinds_senders():
    assert ALLOWED_AUTH[IntegrationKind.SPLUNK] == (IntegrationAuth.URL_KEY,)
    assert IntegrationAuth.HMAC not in ALLOWED_AUTH[IntegrationKind.ALERTMANAGER]
    only_their_own = {IntegrationAuth.ROUTING_KEY, IntegrationAuth.SNS}
    for kind, schemes in ALLOWED_AUTH.items():
        if kind == IntegrationKind.PAGERDUTY:
            assert schemes == (IntegrationAuth.ROUTING_KEY,)
        elif kind == IntegrationKind.CLOUDWATCH:
            assert schemes == (IntegrationAuth.SNS,)
        else:
            assert not only_their_own & set(schemes), kind
        assert DEFAULT_AUTH[kind] in schemes, kind


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "alertmanager", "auth": "bearer", "secret": ""}, "secret"),
        ({"kind": "grafana", "auth": "hmac", "secret": ""}, "secret"),
        ({"kind": "datadog", "secret": ""}, "secret"),  # its default: a secret header
        ({"kind": "nagios", "auth": "header", "secret": ""}, "secret"),
        ({"kind": "generic", "auth": "header", "auth_header": "Authorization"}, "auth_header"),
        ({"kind": "grafana", "auth": "header", "auth_header": "content-type"}, "auth_header"),
        ({"kind": "elastic", "auth": "header", "auth_header": "Host"}, "auth_header"),
        ({"kind": "elastic", "auth": "header", "auth_header": "X-Vigil-Signature"}, "auth_header"),
        ({"kind": "datadog", "auth": "header", "auth_header": "X_Token"}, "auth_header"),
        ({"kind": "datadog", "auth": "header", "auth_header": "X Token"}, "auth_header"),
        ({"kind": "datadog", "auth": "header", "auth_header": "X-Tøken"}, "auth_header"),
        ({"kind": "datadog", "auth": "header", "auth_header": ""}, "auth_header"),
        ({"kind": "datadog", "auth": "sso"}, "auth"),
    ],
)
def test_api_refuses_a_scheme_it_cannot_check(api_as, superuser, data, field):
    response = api_as(superuser).post("/api/v1/integrations/", {"name": "x", **data}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"], response.json()
    assert not Integration.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "alertmanager", "secret": ""},
        {"kind": "grafana", "auth": "url_key", "secret": ""},
        {"kind": "splunk"},
        {"kind": "zabbix", "auth": "header", "auth_header": "X-Zabbix-Token"},
        {"kind": "newrelic", "auth": "basic"},
    ],
)
def test_api_creates_with_a_scheme_the_kind_can_use(api_as, superuser, data):
    response = api_as(superuser).post("/api/v1/integrations/", {"name": "x", **data}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    integration = Integration.objects.get()
    assert body["auth"] == integration.effective_auth
    assert body["auth_header"] == integration.auth_header
    if "auth" in data:
        assert integration.auth == data["auth"]


def test_api_change_to_a_disallowed_scheme_is_refused_and_changes_nothing(api_as, superuser):
    integration = make_integration("splunk")
    client = api_as(superuser)
    for changes in ({"auth": "header"}, {"auth": "routing_key"}):
        response = client.patch(f"/api/v1/integrations/{integration.pk}/", changes, format="json")
        assert response.status_code == 400, response.json()
        assert "auth" in response.json()["errors"]
    integration = make_integration("generic", name="g")
    response = client.patch(
        f"/api/v1/integrations/{integration.pk}/",
        {"auth": "header", "auth_header": "Cookie"},
        format="json",
    )
    assert response.status_code == 400
    integration.refresh_from_db()
    assert (integration.auth, integration.auth_header) == ("", "X-Vigil-Token")


def test_admin_add_form_refuses_a_disallowed_scheme_and_shows_the_choices(client, superuser):
    client.force_login(superuser)
    response = client.post(
        "/admin/incidents/integration/add/",
        {
            "name": "Splunk prod",
            "kind": "splunk",
            "enabled": "on",
            "default_severity": "3",
            "heartbeat_severity": "2",
            "heartbeat_alertname": "Watchdog",
            "auth": "header",
            "auth_header": "X-Vigil-Token",
            "secret": "s3cret-s3cret-s3cret",
            "require_timestamp": "on",
            "group_by": "[]",
        },
    )
    assert response.status_code == 200
    assert "Splunk alert action webhook senders can use: url_key." in response.content.decode()
    assert not Integration.objects.exists()
    page = client.get("/admin/incidents/integration/add/").content.decode()
    assert 'name="auth"' in page and 'name="auth_header"' in page
