"""Replay protection of the signed webhooks: the generic hook's signed timestamp
(``X-Vigil-Timestamp``, the signature over ``"{timestamp}.{body}"``) and Grafana's
(``X-Grafana-Alerting-Signature-Timestamp``, over ``"{timestamp}:{body}"``) must be within the
window of Vigil's clock, and one signed request is accepted once: the same one again is
refused (409) and writes nothing, whatever became of the incident it opened."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import time_machine
from django.db import connection
from django.test import override_settings

from incidents.models import Alert, Incident, IncidentEvent, WebhookDelivery
from incidents.services import incident_resolve
from tests.incidents.detection_fixtures import (
    NOW,
    at_now,  # noqa: F401
    grafana_payload,
    grafana_signature,
    hook_path,
    make_integration,
    post,
    process_pending,
    vigil_headers,
    vigil_signature,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

FIRING = {
    "title": "Checkout error rate above 5%",
    "severity": "critical",
    "dedup_key": "checkout-errors",
    "labels": {"service": "checkout", "alertname": "HighErrorRate"},
}
BODY = json.dumps(FIRING).encode()


@pytest.fixture
def generic(service):
    return make_integration("generic", service=service)


@pytest.fixture
def grafana(service):
    return make_integration("grafana", service=service)


def counts() -> tuple[int, int, int, int]:
    return (
        WebhookDelivery.objects.count(),
        Alert.objects.count(),
        Incident.objects.count(),
        IncidentEvent.objects.count(),
    )


def assert_refused(response, callbacks, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"] and "errors" in body
    assert callbacks == []
    return body


def now_ts(offset: float = 0) -> str:
    return str(int(NOW.timestamp() + offset))


# --- the generic hook ----------------------------------------------------------------------


def test_new_generic_integrations_require_a_signed_timestamp(generic):
    assert generic.require_timestamp is True


def test_the_same_signed_request_is_accepted_once(
    client, django_capture_on_commit_callbacks, generic, caplog
):
    headers = vigil_headers(generic.secret, BODY)
    response, callbacks = post(
        client, hook_path(generic), BODY, capture=django_capture_on_commit_callbacks, **headers
    )
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    process_pending()
    before = counts()
    assert before[2] == 1

    response, callbacks = post(
        client, hook_path(generic), BODY, capture=django_capture_on_commit_callbacks, **headers
    )
    body = assert_refused(response, callbacks, 409, "replayed")
    assert "already accepted" in body["detail"]
    assert counts() == before
    assert "Refused generic webhook: 409 replayed" in caplog.text

    # A new request (a new timestamp) of the same alert is a repeat, counted as before.
    with time_machine.travel(NOW + timedelta(seconds=1), tick=False):
        response, _ = post(
            client,
            hook_path(generic),
            BODY,
            capture=django_capture_on_commit_callbacks,
            **vigil_headers(generic.secret, BODY),
        )
    assert response.status_code == 202, response.content
    process_pending()
    assert Alert.objects.get().count == 2
    assert Incident.objects.count() == 1


def test_a_replay_after_the_incident_resolved_opens_nothing(
    client, django_capture_on_commit_callbacks, generic
):
    """The probe: a captured signed "firing" body replayed after its incident resolved."""
    captured = vigil_headers(generic.secret, BODY)
    response, _ = post(
        client, hook_path(generic), BODY, capture=django_capture_on_commit_callbacks, **captured
    )
    assert response.status_code == 202
    process_pending()
    incident = Incident.objects.get()
    incident_resolve(incident=incident, actor=None, source="system", resolution="Rolled back.")
    before = counts()

    # Within the window the signature is remembered; after it the timestamp is too old.
    for later, status, code in (
        (timedelta(minutes=2), 409, "replayed"),
        (timedelta(minutes=6), 401, "authentication_failed"),
        (timedelta(days=3), 401, "authentication_failed"),
    ):
        with time_machine.travel(NOW + later, tick=False):
            response, callbacks = post(
                client,
                hook_path(generic),
                BODY,
                capture=django_capture_on_commit_callbacks,
                **captured,
            )
        assert_refused(response, callbacks, status, code)
        process_pending()
        assert counts() == before
    assert Incident.objects.get().status == "resolved"


@pytest.mark.parametrize(
    "offset, accepted",
    [(-299, True), (299, True), (-301, False), (301, False), (-86400, False)],
    ids=["4m59s-old", "4m59s-ahead", "5m01s-old", "5m01s-ahead", "a-day-old"],
)
def test_the_timestamp_must_be_within_five_minutes(
    client, django_capture_on_commit_callbacks, generic, offset, accepted
):
    with time_machine.travel(NOW, tick=False):
        response, callbacks = post(
            client,
            hook_path(generic),
            BODY,
            capture=django_capture_on_commit_callbacks,
            **vigil_headers(generic.secret, BODY, timestamp=now_ts(offset)),
        )
    if accepted:
        assert response.status_code == 202, response.content
    else:
        body = assert_refused(response, callbacks, 401, "authentication_failed")
        assert "300 seconds" in body["detail"]
        assert not WebhookDelivery.objects.exists()


@override_settings(VIGIL_HOOK_SIGNATURE_MAX_AGE_SECONDS=60)
def test_the_window_is_a_setting(client, django_capture_on_commit_callbacks, generic):
    with time_machine.travel(NOW, tick=False):
        response, callbacks = post(
            client,
            hook_path(generic),
            BODY,
            capture=django_capture_on_commit_callbacks,
            **vigil_headers(generic.secret, BODY, timestamp=now_ts(-90)),
        )
    assert_refused(response, callbacks, 401, "authentication_failed")


@pytest.mark.parametrize(
    "timestamp",
    ["nan", "NaN", "inf", "-inf", "Infinity", "1e9", "1764236700.5", "-1", "", " ", "0x10", "١٢"],
)
def test_a_timestamp_that_is_not_unix_seconds_is_refused(
    client, django_capture_on_commit_callbacks, generic, timestamp
):
    headers = {
        "X-Vigil-Timestamp": timestamp,
        "X-Vigil-Signature": vigil_signature(generic.secret, BODY, timestamp),
    }
    response, callbacks = post(
        client, hook_path(generic), BODY, capture=django_capture_on_commit_callbacks, **headers
    )
    assert_refused(response, callbacks, 401, "authentication_failed")
    assert not WebhookDelivery.objects.exists()


def test_the_signature_must_cover_the_timestamp(
    client, django_capture_on_commit_callbacks, generic
):
    # Signed over the body alone, sent with a fresh timestamp: a captured legacy request cannot
    # be given a new timestamp.
    headers = {
        "X-Vigil-Timestamp": now_ts(),
        "X-Vigil-Signature": vigil_signature(generic.secret, BODY),
    }
    response, callbacks = post(
        client, hook_path(generic), BODY, capture=django_capture_on_commit_callbacks, **headers
    )
    assert_refused(response, callbacks, 401, "authentication_failed")


def test_a_body_only_signature_is_refused_when_the_timestamp_is_required(
    client, django_capture_on_commit_callbacks, generic
):
    response, callbacks = post(
        client,
        hook_path(generic),
        BODY,
        capture=django_capture_on_commit_callbacks,
        **{"X-Vigil-Signature": vigil_signature(generic.secret, BODY)},
    )
    body = assert_refused(response, callbacks, 401, "authentication_failed")
    assert "X-Vigil-Timestamp" in body["detail"]
    assert not WebhookDelivery.objects.exists()


def test_a_legacy_integration_accepts_body_only_signatures_without_replay_protection(
    client, django_capture_on_commit_callbacks, service
):
    legacy = make_integration("generic", service=service, require_timestamp=False)
    legacy_headers = {"X-Vigil-Signature": vigil_signature(legacy.secret, BODY)}
    for _ in range(2):
        response, _ = post(
            client,
            hook_path(legacy),
            BODY,
            capture=django_capture_on_commit_callbacks,
            **legacy_headers,
        )
        assert response.status_code == 202, response.content
    # A sender that already signs timestamps is checked and replay-protected as usual.
    headers = vigil_headers(legacy.secret, BODY)
    response, _ = post(
        client, hook_path(legacy), BODY, capture=django_capture_on_commit_callbacks, **headers
    )
    assert response.status_code == 202
    response, callbacks = post(
        client, hook_path(legacy), BODY, capture=django_capture_on_commit_callbacks, **headers
    )
    assert_refused(response, callbacks, 409, "replayed")
    assert WebhookDelivery.objects.count() == 3


def test_an_invalid_payload_does_not_use_up_its_signature(
    client, django_capture_on_commit_callbacks, generic
):
    """A refusal writes nothing, the replay record included."""
    invalid = json.dumps({"title": " "}).encode()
    headers = vigil_headers(generic.secret, invalid)
    for _ in range(2):
        response, callbacks = post(
            client,
            hook_path(generic),
            invalid,
            capture=django_capture_on_commit_callbacks,
            **headers,
        )
        assert_refused(response, callbacks, 400, "invalid")


def test_the_same_request_to_another_integration_is_not_a_replay(
    client, django_capture_on_commit_callbacks, service
):
    first = make_integration("generic", service=service, secret="one shared secret")
    second = make_integration("generic", service=service, secret="one shared secret")
    headers = vigil_headers(first.secret, BODY)
    for integration in (first, second):
        response, _ = post(
            client,
            hook_path(integration),
            BODY,
            capture=django_capture_on_commit_callbacks,
            **headers,
        )
        assert response.status_code == 202, response.content


def test_remembered_signatures_are_pruned_once_out_of_the_window(
    client, django_capture_on_commit_callbacks, generic
):
    from incidents.models import WebhookSignature

    def send():
        return post(
            client,
            hook_path(generic),
            BODY,
            capture=django_capture_on_commit_callbacks,
            **vigil_headers(generic.secret, BODY),
        )[0]

    for minute in range(3):
        with time_machine.travel(NOW + timedelta(minutes=minute), tick=False):
            assert send().status_code == 202
    assert WebhookSignature.objects.count() == 3
    with time_machine.travel(NOW + timedelta(minutes=7), tick=False):
        assert send().status_code == 202
    # Those of minutes 0 and 1 are more than 5 minutes old: no timestamp they signed passes.
    assert WebhookSignature.objects.count() == 2


def test_the_snippet_shown_to_administrators_signs_as_vigil_checks(
    client, django_capture_on_commit_callbacks, generic
):
    """The admin's (and README's) shell recipe: ``date +%s`` and ``openssl dgst -hmac``."""
    from incidents.detection.integrations import integration_snippet

    if shutil.which("openssl") is None or shutil.which("bash") is None:
        pytest.skip("needs openssl and bash")
    snippet = integration_snippet(generic)
    assert "X-Vigil-Timestamp: $ts" in snippet
    recipe = snippet.split("curl ")[0] + 'printf "%s\\n%s\\n%s" "$ts" "$sig" "$body"\n'
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    result = subprocess.run(
        ["bash", "-c", recipe], capture_output=True, text=True, check=True, env=env
    )
    timestamp, signature, body = result.stdout.split("\n", 2)
    # ``date`` runs outside time-machine: travel to the time it signed.
    with time_machine.travel(int(timestamp), tick=False):
        response, _ = post(
            client,
            hook_path(generic),
            body.encode(),
            capture=django_capture_on_commit_callbacks,
            **{"X-Vigil-Timestamp": timestamp, "X-Vigil-Signature": f"sha256={signature}"},
        )
    assert response.status_code == 202, response.content


def test_the_readme_python_recipe_signs_as_vigil_checks(
    client, django_capture_on_commit_callbacks, generic, monkeypatch
):
    import requests

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (recipe,) = [
        block
        for block in readme.split("```python\n")
        if block.split("```")[0].count("def send_alert")
    ]
    namespace: dict = {}
    exec(recipe.split("```")[0], namespace)
    sent = []

    def through_the_test_client(url, data, headers, timeout):
        response, _ = post(
            client,
            urlsplit(url).path,
            data,
            capture=django_capture_on_commit_callbacks,
            **{k: v for k, v in headers.items() if k != "Content-Type"},
        )
        sent.append(response)
        return response

    monkeypatch.setattr(requests, "post", through_the_test_client)
    url = "https://vigil.example.com" + hook_path(generic)
    namespace["send_alert"](url, generic.secret, FIRING)
    namespace["send_alert"](url, generic.secret, {**FIRING, "status": "resolved"})
    assert [response.status_code for response in sent] == [202, 202]


# --- Grafana -------------------------------------------------------------------------------


def grafana_headers(integration, body: bytes, timestamp: str | None) -> dict[str, str]:
    headers = {
        "X-Grafana-Alerting-Signature": grafana_signature(integration.secret, body, timestamp)
    }
    if timestamp is not None:
        headers["X-Grafana-Alerting-Signature-Timestamp"] = timestamp
    return headers


@pytest.mark.parametrize(
    "timestamp", ["nan", "NaN", "inf", "-inf", "infinity", "1e9", "1764236700.5", "-5", "+5"]
)
def test_grafana_timestamp_that_is_not_unix_seconds_is_refused(
    client, django_capture_on_commit_callbacks, grafana, timestamp
):
    body = json.dumps(grafana_payload()).encode()
    response, callbacks = post(
        client,
        hook_path(grafana),
        body,
        capture=django_capture_on_commit_callbacks,
        **grafana_headers(grafana, body, timestamp),
    )
    assert_refused(response, callbacks, 401, "authentication_failed")
    assert not WebhookDelivery.objects.exists()


def test_grafana_signed_timestamp_is_accepted_once(
    client, django_capture_on_commit_callbacks, grafana
):
    body = json.dumps(grafana_payload()).encode()
    headers = grafana_headers(grafana, body, str(int(NOW.timestamp())))
    response, _ = post(
        client, hook_path(grafana), body, capture=django_capture_on_commit_callbacks, **headers
    )
    assert response.status_code == 202, response.content
    response, callbacks = post(
        client, hook_path(grafana), body, capture=django_capture_on_commit_callbacks, **headers
    )
    assert_refused(response, callbacks, 409, "replayed")
    assert WebhookDelivery.objects.count() == 1


def test_grafana_body_only_signature_needs_the_integration_to_allow_it(
    client, django_capture_on_commit_callbacks, grafana, service
):
    body = json.dumps(grafana_payload()).encode()
    response, callbacks = post(
        client,
        hook_path(grafana),
        body,
        capture=django_capture_on_commit_callbacks,
        **grafana_headers(grafana, body, None),
    )
    detail = assert_refused(response, callbacks, 401, "authentication_failed")["detail"]
    assert "X-Grafana-Alerting-Signature-Timestamp" in detail

    legacy = make_integration("grafana", service=service, require_timestamp=False)
    response, _ = post(
        client,
        hook_path(legacy),
        body,
        capture=django_capture_on_commit_callbacks,
        **grafana_headers(legacy, body, None),
    )
    assert response.status_code == 202, response.content


# --- two copies at the same moment ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_copies_sent_at_once_are_accepted_once(service):
    """On PostgreSQL the second INSERT of the same signature waits for the first transaction
    and then finds the row: one 202 and one 409, however the requests interleave."""
    from django.test import Client

    integration = make_integration("generic", service=service)
    headers = vigil_headers(integration.secret, BODY)
    start = threading.Barrier(4)
    statuses: list[int] = []

    def send() -> None:
        try:
            start.wait()
            response = Client().generic(
                "POST",
                hook_path(integration),
                BODY,
                content_type="application/json",
                headers=headers,
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202, 409, 409, 409]
    assert WebhookDelivery.objects.count() == 1


# --- the switch: admin, API, and the integrations that existed before -----------------------


def test_the_switch_is_changed_in_the_admin_through_the_service(
    client, django_capture_on_commit_callbacks, superuser, generic
):
    from tests.incidents.test_admin_policy_services import admin_url, form_data

    client.force_login(superuser)
    url = admin_url(type(generic), "change", generic.pk)
    assert 'name="require_timestamp"' in client.get(url).content.decode()
    data = form_data(client, url)
    data.pop("require_timestamp")  # unticked

    assert client.post(url, data).status_code == 302
    generic.refresh_from_db()
    assert generic.require_timestamp is False
    record = generic.history.latest("history_id")
    assert record.history_change_reason == "updated require_timestamp via admin"
    client.logout()
    response, _ = post(
        client,
        hook_path(generic),
        BODY,
        capture=django_capture_on_commit_callbacks,
        **{"X-Vigil-Signature": vigil_signature(generic.secret, BODY)},
    )
    assert response.status_code == 202, response.content


def test_the_switch_is_read_and_changed_through_the_api(api_as, superuser, generic):
    api = api_as(superuser)
    assert api.get(f"/api/v1/integrations/{generic.pk}/").json()["require_timestamp"] is True

    response = api.patch(
        f"/api/v1/integrations/{generic.pk}/", {"require_timestamp": False}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["require_timestamp"] is False
    generic.refresh_from_db()
    assert generic.require_timestamp is False


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_integrations_made_before_the_upgrade_keep_accepting_body_only_signatures():
    """The migration turns the switch off for the integrations that exist when it runs (their
    senders sign the body alone), and leaves it on by default for those made after."""
    from django.db.migrations.executor import MigrationExecutor

    migration = ("incidents", "0010_webhook_replay_protection")
    executor = MigrationExecutor(connection)
    node = executor.loader.graph.node_map[migration]
    (before,) = [parent.key for parent in node.parents if parent.key[0] == "incidents"]
    # Every app's latest migration: going back to ``before`` also unapplies the migrations of
    # the apps built on the incident core (communications, reviews, kpis), which must come back.
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([before])
        old_apps = executor.loader.project_state([before]).apps
        OldIntegration = old_apps.get_model("incidents", "Integration")
        OldIntegration.objects.create(name="old sender", kind="generic", key="k" * 32, secret="s")

        executor = MigrationExecutor(connection)
        executor.migrate([migration])
        new_apps = executor.loader.project_state([migration]).apps
        NewIntegration = new_apps.get_model("incidents", "Integration")
        assert NewIntegration.objects.get(name="old sender").require_timestamp is False
        made_after = NewIntegration.objects.create(
            name="new sender", kind="generic", key="n" * 32, secret="s"
        )
        assert made_after.require_timestamp is True
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
