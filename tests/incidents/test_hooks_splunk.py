"""Splunk's webhook alert action through /hooks/splunk/<key>/, protected by the URL key alone
(Splunk's webhook sends no custom header).

The payload is shaped as Splunk documents it (Splunk Enterprise Alerting Manual, "Use a
webhook alert action", https://help.splunk.com/splunk-enterprise/alert-and-respond/
alerting-manual/10.0/configure-alert-actions/use-a-webhook-alert-action: "result" the first
result row with every value a string, "sid", "results_link", "search_name" (null for an unsaved
search), "owner", "app"), filled in as a scheduled search for checkout 5xx errors would.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from django.test import override_settings

from incidents.models import Alert, Incident, Source
from incidents.services import incident_cancel
from tests.incidents.detection_fixtures import (
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    nothing_written,
    payload,
    post,
    process_pending,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

FIRST_EVENT = datetime(2026, 11, 27, 9, 38, 12, tzinfo=UTC)  # result._time 1795772292


def alert_action(**result_changes) -> dict:
    body = payload("splunk-webhook-alert-action.json")
    body["result"].update(result_changes)
    return body


def next_run(body: dict, sid: str) -> dict:
    body = copy.deepcopy(body)
    body["sid"] = sid
    body["results_link"] = f"https://splunk.example.com:8000/app/search/@go?sid={sid}"
    return body


@pytest.fixture
def integration(service):
    return make_integration("splunk", service=service, default_severity=4)


def send(client, capture, integration, body):
    return post(client, hook_path(integration), body, capture=capture)


def test_triggered_alert_opens_an_incident_and_later_runs_repeat_it(
    client, django_capture_on_commit_callbacks, integration
):
    response, callbacks = send(
        client, django_capture_on_commit_callbacks, integration, alert_action()
    )
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    process_pending()

    alert = Alert.objects.get()
    incident = Incident.objects.get()
    assert incident.title == "Checkout 5xx spike on web-3"
    assert incident.severity_id == 2  # result.severity "high"
    assert incident.impact_started_at == FIRST_EVENT
    assert alert.fingerprint == "Checkout 5xx spike/web-3"
    assert alert.annotations["url"].endswith("sid=" + alert.raw["sid"])
    assert {k: alert.labels[k] for k in ("search_name", "host", "service", "app")} == {
        "search_name": "Checkout 5xx spike",
        "host": "web-3",
        "service": "checkout",
        "app": "search",
    }
    assert "_time" not in alert.labels

    # The next scheduled run that triggers: a new sid, the same alert, its link updated.
    second = next_run(
        alert_action(), "scheduler__admin__search__RMD5b1c9f0e5a2d7c3e8_at_1795772700_1240"
    )
    send(client, django_capture_on_commit_callbacks, integration, second)
    process_pending()
    alert.refresh_from_db()
    assert (alert.count, alert.status, Incident.objects.count()) == (2, "firing", 1)
    assert alert.annotations["url"].endswith("_at_1795772700_1240")

    # Another host in the same search: its own alert, the search's incident.
    send(client, django_capture_on_commit_callbacks, integration, alert_action(host="web-4"))
    process_pending()
    assert Alert.objects.get(fingerprint="Checkout 5xx spike/web-4").incident == incident
    assert Incident.objects.count() == 1


def test_a_run_after_its_incident_ended_opens_a_new_one(
    client, django_capture_on_commit_callbacks, integration, superuser
):
    # Splunk never resolves: an alert stays firing after people end its incident, and the
    # search triggering again is a new incident, not a count on the old one.
    send(client, django_capture_on_commit_callbacks, integration, alert_action())
    process_pending()
    first = Incident.objects.get()
    incident_cancel(incident=first, actor=superuser, source=Source.ADMIN, reason="Handled")

    again = next_run(alert_action(), "scheduler__admin__search__RMD5_at_1795773000_1300")
    send(client, django_capture_on_commit_callbacks, integration, again)
    process_pending()
    second = Incident.objects.exclude(pk=first.pk).get()
    alert = Alert.objects.get()
    assert (alert.incident, alert.count) == (second, 2)
    notes = list(second.timeline.values_list("message", flat=True))
    assert any(f"kept firing after {first.number} ended" in note for note in notes), notes

    # Repeats while the new incident is active count on it.
    send(client, django_capture_on_commit_callbacks, integration, again)
    process_pending()
    assert Incident.objects.count() == 2


@pytest.mark.parametrize(
    "fields, severity",
    [
        ({"severity": "critical"}, 1),
        ({"severity": "HIGH"}, 2),
        ({"severity": "medium"}, 3),
        ({"severity": "low"}, 4),
        ({"severity": "1"}, 1),
        ({"severity": None, "urgency": "critical"}, 1),
        ({"severity": None, "urgency": "informational"}, 4),
        ({"severity": None}, 3),
        ({"severity": "whenever"}, 3),
    ],
    ids=["critical", "high", "medium", "low", "1", "urgency", "informational", "none", "other"],
)
def test_result_severity_or_urgency_gives_the_severity(
    client, django_capture_on_commit_callbacks, service, fields, severity
):
    # Neither given (or not a severity): the integration's default severity (Sev 3 here).
    integration = make_integration("splunk", service=service, default_severity=3)
    send(client, django_capture_on_commit_callbacks, integration, alert_action(**fields))
    process_pending()
    assert Incident.objects.get().severity_id == severity


def test_result_title_and_iso_time_and_unsaved_search(
    client, django_capture_on_commit_callbacks, integration
):
    body = alert_action(title="Checkout returns 503", _time="2026-11-27T09:38:12.000+00:00")
    body["search_name"] = None
    del body["result"]["host"]
    send(client, django_capture_on_commit_callbacks, integration, body)
    process_pending()
    alert = Alert.objects.get()
    assert alert.title == "Checkout returns 503"
    assert alert.starts_at == FIRST_EVENT
    # No saved search name: the run's search id is the identity.
    assert alert.fingerprint == body["sid"]


@pytest.mark.parametrize(
    "change, field",
    [
        (None, "non_field_errors"),
        ({"result": None}, "result"),
        ({"result": [{"host": "web-3"}]}, "result"),
        ({"search_name": 42}, "search_name"),
        ({"results_link": ["https://splunk.example.com"]}, "results_link"),
        ({"search_name": None, "sid": None}, "search_name"),
        ({"search_name": " ", "sid": ""}, "search_name"),
    ],
    ids=[
        "not-an-object",
        "no-result",
        "result-list",
        "name-number",
        "link-list",
        "no-name",
        "blank",
    ],
)
def test_malformed_payload_is_400_and_stores_nothing(
    client, django_capture_on_commit_callbacks, integration, change, field
):
    body: object = [1, 2, 3]
    if change is not None:
        body = alert_action()
        body.update(change)
    response, callbacks = send(client, django_capture_on_commit_callbacks, integration, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert callbacks == [] and nothing_written()


@override_settings(VIGIL_BASE_URL="https://vigil.example.com")
def test_admin_page_shows_the_url_as_the_only_credential(client, superuser):
    integration = make_integration("splunk")
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"URL: https://vigil.example.com/hooks/splunk/{integration.key}/" in text
    assert "sends no custom header and signs nothing" in text
    assert "the key in\nthis URL is the only credential" in text
