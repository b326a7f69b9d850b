"""Heartbeats: silence is an alert. A job pings ``/hooks/ping/<key>/`` (or Alertmanager's
always-firing Watchdog arrives); when nothing comes for the interval, the beat sweep opens one
"no signal" incident, and the signal returning resolves it. Through the ping hook, the
Alertmanager hook, the sweep and resolve tasks, the API and the admin."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache

from config.celery import app
from incidents.detection.integrations import integration_snippet
from incidents.models import (
    Alert,
    Incident,
    Integration,
    Kind,
    Source,
    Status,
    TimelineEntry,
)
from incidents.tasks import heartbeat_sweep_task
from tests.incidents.detection_fixtures import (
    NOW,
    alertmanager_payload,
    hook_path,
    make_integration,
    post,
    process_pending,
    vigil_headers,
)

pytestmark = pytest.mark.django_db
BASE = "https://vigil.example.com"


@pytest.fixture
def clock():
    """The clock stands still at ``NOW`` until a test moves it."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def base_url(settings):
    settings.VIGIL_BASE_URL = BASE


@pytest.fixture
def eager():
    """Tasks published after commit run in this process, as a worker would run them."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def backups(clock, service):
    return make_integration(
        "heartbeat", name="Nightly backup", heartbeat_minutes=10, service=service
    )


def ping_path(integration: Integration) -> str:
    return f"/hooks/ping/{integration.key}/"


def ping(client, integration: Integration, method: str = "get", **kwargs):
    return getattr(client, method)(ping_path(integration), **kwargs)


def status_of(api, integration: Integration) -> dict:
    response = api.get(f"/api/v1/integrations/{integration.pk}/")
    assert response.status_code == 200, response.content
    return response.json()


def watchdog(status: str = "firing") -> dict:
    """Alertmanager's notification of the kube-prometheus Watchdog, always firing."""
    body = alertmanager_payload()
    alert = copy.deepcopy(body["alerts"][0])
    alert.update(
        status=status,
        labels={"alertname": "Watchdog", "severity": "none", "prometheus": "monitoring/k8s"},
        annotations={"summary": "An alert that should always be firing."},
        startsAt="2026-11-27T08:00:00Z",
        endsAt="0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T09:44:00Z",
        fingerprint="e0a4e9f3c3b2a1d0",
    )
    body.update(
        status=status,
        groupKey='{}/{}:{alertname="Watchdog"}',
        groupLabels={"alertname": "Watchdog"},
        commonLabels=dict(alert["labels"]),
        commonAnnotations={},
        alerts=[alert],
    )
    return body


# --- the ping ------------------------------------------------------------------------------------


def test_a_heartbeat_integration_has_a_ping_url_and_a_cron_snippet(api_as, superuser, backups):
    body = status_of(api_as(superuser), backups)
    url = f"{BASE}/hooks/ping/{backups.key}/"
    assert body["urls"] == {"ping_url": url}
    assert {k: body[k] for k in ("heartbeat_minutes", "heartbeat_status", "last_signal_at")} == {
        "heartbeat_minutes": 10,
        "heartbeat_status": "waiting",
        "last_signal_at": None,
    }
    snippet = integration_snippet(backups)
    assert f"&& curl -fsS --retry 3 -o /dev/null '{url}'" in snippet
    assert "ExecStartPost=/usr/bin/curl -fsS" in snippet
    assert "set -eu" in snippet


def test_pings_keep_it_healthy_and_the_sweep_opens_nothing(
    client, api_as, superuser, backups, clock
):
    for method in ("get", "head", "post"):
        response = ping(client, backups, method)
        assert response.status_code == 200, response.content
    assert client.get(ping_path(backups)).json() == {"status": "ok"}
    # Any body, any content type: ignored.
    response = client.post(ping_path(backups), b"backup done: 4.2 GB", content_type="text/plain")
    assert response.status_code == 200
    backups.refresh_from_db()
    assert backups.last_signal_at == NOW
    assert backups.heartbeat_due_at == NOW + timedelta(minutes=10)

    for _ in range(3):
        clock.shift(timedelta(minutes=9))
        assert heartbeat_sweep_task() == 0
        assert ping(client, backups).status_code == 200
    assert not Incident.objects.exists()
    body = status_of(api_as(superuser), backups)
    assert body["heartbeat_status"] == "healthy"
    assert body["last_signal_at"] == (NOW + timedelta(minutes=27)).isoformat().replace(
        "+00:00", "Z"
    )


@pytest.mark.parametrize("target", ["integration", "service"])
def test_silence_in_a_maintenance_window_opens_nothing_until_it_ends(
    client, api_as, superuser, backups, clock, service, target
):
    assert ping(client, backups).status_code == 200
    window = {"integration": backups.pk} if target == "integration" else {"service": service.slug}
    response = api_as(superuser).post(
        "/api/v1/maintenance-windows/",
        {
            "reason": "Backup server move",
            "starts_at": NOW.isoformat(),
            "ends_at": (NOW + timedelta(hours=1)).isoformat(),
            **window,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    clock.shift(timedelta(minutes=30))
    assert heartbeat_sweep_task() == 0
    clock.shift(timedelta(minutes=29))
    assert heartbeat_sweep_task() == 0
    assert not Incident.objects.exists()
    # The window is over and the job still silent: the incident opens then, once.
    clock.shift(timedelta(minutes=2))
    assert heartbeat_sweep_task() == 1
    assert heartbeat_sweep_task() == 0
    assert Incident.objects.get().impact_started_at == NOW + timedelta(hours=1)


def test_silence_opens_exactly_one_incident_and_the_ping_resolves_it(
    client, api_as, superuser, backups, clock, service, eager, django_capture_on_commit_callbacks
):
    assert ping(client, backups).status_code == 200
    clock.shift(timedelta(minutes=10))
    assert heartbeat_sweep_task() == 1  # due now: silent for the whole interval
    clock.shift(timedelta(minutes=1))
    assert heartbeat_sweep_task() == 0
    assert heartbeat_sweep_task() == 0

    incident = Incident.objects.get()
    assert incident.title == "No signal from Nightly backup for 10 minutes"
    assert incident.severity_id == 2
    assert list(incident.services.all()) == [service]
    assert incident.detection_source == "monitoring"
    assert incident.status == Status.OPEN
    assert incident.impact_started_at == NOW + timedelta(minutes=10)
    created = incident.timeline.get(kind=Kind.CREATED)
    assert created.source == Source.SYSTEM
    note = incident.timeline.get(kind=Kind.ALERT)
    assert note.message.startswith("No signal from Nightly backup for 10 minutes")
    assert "The last signal came at 2026-11-27 09:45:00" in note.message
    body = status_of(api_as(superuser), backups)
    assert body["heartbeat_status"] == "silent"
    assert body["heartbeat_incident"] == incident.number

    # Still silent an hour later: still the one incident.
    clock.shift(timedelta(hours=1))
    assert heartbeat_sweep_task() == 0
    assert Incident.objects.count() == 1

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert ping(client, backups).status_code == 200
    assert callbacks  # the resolution is queued once the signal commits
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED
    assert incident.resolution == "Signal from Nightly backup returned at 2026-11-27 10:56:00 UTC."
    assert incident.timeline.filter(
        kind=Kind.ALERT, message=incident.resolution, source=Source.SYSTEM
    ).exists()
    body = status_of(api_as(superuser), backups)
    assert (body["heartbeat_status"], body["heartbeat_incident"]) == ("healthy", None)

    # A later ping has nothing to resolve; a new silence opens a new incident.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert ping(client, backups).status_code == 200
    assert callbacks == []
    clock.shift(timedelta(minutes=10, seconds=1))
    assert heartbeat_sweep_task() == 1
    assert Incident.objects.filter(status=Status.OPEN).count() == 1


def test_a_resolution_people_wrote_is_kept(
    client, backups, clock, eager, django_capture_on_commit_callbacks
):
    clock.shift(timedelta(minutes=11))
    heartbeat_sweep_task()
    incident = Incident.objects.get()
    Incident.objects.filter(pk=incident.pk).update(resolution="Backup host rebooted.")
    with django_capture_on_commit_callbacks(execute=True):
        ping(client, backups)
    incident.refresh_from_db()
    assert (incident.status, incident.resolution) == (Status.RESOLVED, "Backup host rebooted.")


def test_never_pinged_counts_from_when_the_heartbeat_was_configured(backups, clock):
    clock.shift(timedelta(minutes=9, seconds=59))
    assert heartbeat_sweep_task() == 0
    clock.shift(timedelta(seconds=1))
    assert heartbeat_sweep_task() == 1
    note = Incident.objects.get().timeline.get(kind=Kind.ALERT)
    assert "No signal has come since the heartbeat was configured." in note.message


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param({"enabled": False}, 403, id="disabled"),
        pytest.param({}, 404, id="unknown key"),
    ],
)
def test_refused_pings_write_nothing(client, backups, change, status):
    if change:
        Integration.objects.filter(pk=backups.pk).update(**change)
        path = ping_path(backups)
    else:
        path = "/hooks/ping/" + "0" * 32 + "/"
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["status"] == status
    backups.refresh_from_db()
    assert backups.last_signal_at is None


def test_a_ping_to_an_integration_without_heartbeat_is_a_409(client, clock):
    integration = make_integration("alertmanager")
    bearer = {"Authorization": f"Bearer {integration.secret}"}
    response = client.get(ping_path(integration), headers=bearer)
    assert response.status_code == 409
    assert response.json()["code"] == "no_heartbeat"
    assert "no heartbeat configured" in response.json()["detail"]
    integration.refresh_from_db()
    assert integration.last_signal_at is None


@pytest.mark.parametrize(
    ("kind", "credentials"),
    [
        pytest.param(
            "alertmanager", lambda i: {"Authorization": f"Bearer {i.secret}"}, id="bearer"
        ),
        pytest.param("datadog", lambda i: {"X-Vigil-Token": i.secret}, id="static header"),
        pytest.param("generic", lambda i: vigil_headers(i.secret, b""), id="signature"),
    ],
)
def test_a_ping_carries_the_credential_of_the_integrations_scheme(client, clock, kind, credentials):
    integration = make_integration(kind, heartbeat_minutes=5)
    response = client.get(ping_path(integration))
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    response = client.get(ping_path(integration), headers={"X-Vigil-Token": "wrong"})
    assert response.status_code == 401
    integration.refresh_from_db()
    assert integration.last_signal_at is None

    response = client.get(ping_path(integration), headers=credentials(integration))
    assert response.status_code == 200, response.content
    # The same signed ping again (curl --retry) is the same signal, not a refusal.
    response = client.get(ping_path(integration), headers=credentials(integration))
    assert response.status_code == 200
    integration.refresh_from_db()
    assert integration.last_signal_at == NOW


def test_a_pagerduty_integration_is_pinged_on_its_routing_key(client, clock):
    integration = make_integration("pagerduty", heartbeat_minutes=5)
    assert client.get(ping_path(integration)).status_code == 200
    integration.refresh_from_db()
    assert integration.last_signal_at == NOW


def test_other_methods_and_oversize_bodies_are_refused(client, backups, settings):
    response = client.put(ping_path(backups))
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, POST"
    settings.VIGIL_HOOK_MAX_BODY_BYTES = 100
    response = client.post(ping_path(backups), b"x" * 101, content_type="text/plain")
    assert response.status_code == 413
    backups.refresh_from_db()
    assert backups.last_signal_at is None


def test_disabled_integrations_are_not_swept_and_counting_restarts_when_enabled(
    api_as, superuser, backups, clock
):
    api = api_as(superuser)
    assert (
        api.patch(
            f"/api/v1/integrations/{backups.pk}/", {"enabled": False}, format="json"
        ).status_code
        == 200
    )
    clock.shift(timedelta(hours=2))
    assert heartbeat_sweep_task() == 0
    assert status_of(api, backups)["heartbeat_status"] == "off"
    api.patch(f"/api/v1/integrations/{backups.pk}/", {"enabled": True}, format="json")
    assert heartbeat_sweep_task() == 0
    clock.shift(timedelta(minutes=10))
    assert heartbeat_sweep_task() == 1


# --- configuration through the API ---------------------------------------------------------------


def test_configuring_a_heartbeat_starts_counting_and_turning_it_off_stops(api_as, superuser, clock):
    api = api_as(superuser)
    response = api.post(
        "/api/v1/integrations/",
        {"name": "Prometheus", "kind": "alertmanager", "heartbeat_severity": 1},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    integration = Integration.objects.get()
    assert "ping_url" not in body["urls"]
    assert (body["heartbeat_status"], body["heartbeat_alertname"]) == ("off", "Watchdog")

    response = api.patch(
        f"/api/v1/integrations/{integration.pk}/", {"heartbeat_minutes": 5}, format="json"
    )
    body = response.json()
    assert body["urls"]["ping_url"] == f"{BASE}/hooks/ping/{integration.key}/"
    assert (body["heartbeat_minutes"], body["heartbeat_severity"]) == (5, 1)
    integration.refresh_from_db()
    assert integration.heartbeat_due_at == NOW + timedelta(minutes=5)

    clock.shift(timedelta(minutes=6))
    assert heartbeat_sweep_task() == 1
    assert Incident.objects.get().severity_id == 1
    response = api.patch(
        f"/api/v1/integrations/{integration.pk}/", {"heartbeat_minutes": None}, format="json"
    )
    assert (response.json()["heartbeat_status"], response.json()["heartbeat_incident"]) == (
        "off",
        None,
    )
    integration.refresh_from_db()
    assert integration.heartbeat_due_at is None
    clock.shift(timedelta(hours=1))
    assert heartbeat_sweep_task() == 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "Cron", "kind": "heartbeat"}, "heartbeat_minutes"),
        ({"name": "Cron", "kind": "heartbeat", "heartbeat_minutes": 0}, "heartbeat_minutes"),
        (
            {"name": "Cron", "kind": "heartbeat", "heartbeat_minutes": 60 * 24 * 31 + 1},
            "heartbeat_minutes",
        ),
        (
            {"name": "Cron", "kind": "heartbeat", "heartbeat_minutes": 5, "heartbeat_severity": 9},
            "heartbeat_severity",
        ),
    ],
)
def test_invalid_heartbeat_settings_are_a_400(api_as, superuser, data, field):
    response = api_as(superuser).post("/api/v1/integrations/", data, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not Integration.objects.exists()


# --- Alertmanager's Watchdog ---------------------------------------------------------------------


@pytest.fixture
def prometheus(clock, service):
    return make_integration("alertmanager", name="Prometheus", service=service, heartbeat_minutes=5)


def send(client, capture, integration, body) -> None:
    response, _ = post(
        client,
        hook_path(integration),
        body,
        capture=capture,
        Authorization=f"Bearer {integration.secret}",
    )
    assert response.status_code == 202, response.content
    assert process_pending() == ["processed"]


def test_the_watchdog_is_a_signal_and_opens_no_incident(
    client, prometheus, clock, django_capture_on_commit_callbacks
):
    send(client, django_capture_on_commit_callbacks, prometheus, watchdog())
    assert not Alert.objects.exists()
    assert not Incident.objects.exists()
    prometheus.refresh_from_db()
    assert prometheus.last_signal_at == NOW
    assert prometheus.heartbeat_due_at == NOW + timedelta(minutes=5)

    # Bundled with a real alert: the real one is stored and opens its incident; the
    # Watchdog neither.
    clock.shift(timedelta(minutes=4))
    body = watchdog()
    body["alerts"].append(alertmanager_payload()["alerts"][0])
    send(client, django_capture_on_commit_callbacks, prometheus, body)
    assert list(Alert.objects.values_list("labels__alertname", flat=True)) == ["HighErrorRate"]
    assert Incident.objects.get().title != "Watchdog"
    prometheus.refresh_from_db()
    assert prometheus.last_signal_at == NOW + timedelta(minutes=4)
    assert heartbeat_sweep_task() == 0


def test_the_watchdog_stopping_opens_an_incident_and_its_return_resolves_it(
    client, prometheus, clock, eager, django_capture_on_commit_callbacks
):
    send(client, django_capture_on_commit_callbacks, prometheus, watchdog())
    clock.shift(timedelta(minutes=3))
    # Its resolved notification (the alert pipeline stopped) is no signal.
    send(client, django_capture_on_commit_callbacks, prometheus, watchdog("resolved"))
    assert not Alert.objects.exists()
    clock.shift(timedelta(minutes=3))
    assert heartbeat_sweep_task() == 1
    incident = Incident.objects.get()
    assert incident.title == "No signal from Prometheus for 5 minutes"

    clock.shift(timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        response, _ = post(
            client,
            hook_path(prometheus),
            watchdog(),
            capture=django_capture_on_commit_callbacks,
            Authorization=f"Bearer {prometheus.secret}",
        )
        assert response.status_code == 202
        assert process_pending() == ["processed"]
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED
    assert not Alert.objects.exists()


def test_an_unprocessed_delivery_that_may_hold_the_watchdog_defers_the_sweep(
    client, prometheus, clock, django_capture_on_commit_callbacks
):
    clock.shift(timedelta(minutes=4))
    response, _ = post(
        client,
        hook_path(prometheus),
        watchdog(),
        capture=django_capture_on_commit_callbacks,
        Authorization=f"Bearer {prometheus.secret}",
    )
    assert response.status_code == 202
    clock.shift(timedelta(minutes=2))  # due, but the delivery is still pending
    assert heartbeat_sweep_task() == 0
    assert process_pending() == ["processed"]
    assert heartbeat_sweep_task() == 0
    clock.shift(timedelta(minutes=5))
    assert heartbeat_sweep_task() == 1


def test_the_watchdog_opens_no_incident_without_a_heartbeat_either(
    client, clock, service, django_capture_on_commit_callbacks
):
    integration = make_integration("alertmanager", service=service)
    send(client, django_capture_on_commit_callbacks, integration, watchdog())
    assert not Alert.objects.exists() and not Incident.objects.exists()
    integration.refresh_from_db()
    assert (integration.last_signal_at, integration.heartbeat_due_at) == (NOW, None)


# --- the admin -----------------------------------------------------------------------------------


def test_the_admin_list_shows_last_signal_and_heartbeat(client, superuser, clock, service):
    healthy = make_integration("heartbeat", name="Healthy job", heartbeat_minutes=60)
    silent = make_integration("heartbeat", name="Silent job", heartbeat_minutes=5)
    make_integration("alertmanager", name="No heartbeat")
    client.get(ping_path(healthy))
    client.get(ping_path(silent))
    clock.shift(timedelta(minutes=6))
    heartbeat_sweep_task()
    incident = Incident.objects.get()

    client.force_login(superuser)
    page = client.get("/admin/incidents/integration/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Last signal" in html and "Heartbeat" in html
    assert "healthy" in html
    assert "silent since 09:45 UTC (6 min ago)" in html
    assert f'/admin/incidents/incident/{incident.pk}/change/">{incident.number}</a>' in html
    assert ">off<" in html

    form = client.get(f"/admin/incidents/integration/{silent.pk}/change/")
    assert form.status_code == 200
    for field in ("heartbeat_minutes", "heartbeat_alertname", "heartbeat_severity"):
        assert f'name="{field}"' in form.content.decode()


# --- the sweep's cost ----------------------------------------------------------------------------

CLAIM_QUERIES = 3  # the claim, in its savepoint
KEPT_POLICY_READS = 3
PER_SILENT = 17  # opening one incident (incident_create's rows and event, the paged people's time
# zones) and marking the row


def test_the_sweep_costs_a_fixed_claim_plus_a_fixed_amount_per_silent_integration(
    clock, django_assert_max_num_queries
):
    # No version token in the cache from an earlier test: each one this test sets expires
    # while the clock moves below, whatever ran before it in this process.
    cache.clear()
    for n in range(20):
        make_integration("heartbeat", name=f"Healthy {n}", heartbeat_minutes=60)
    with django_assert_max_num_queries(CLAIM_QUERIES):
        assert heartbeat_sweep_task() == 0
    # The day's first incident also creates the day's ID counter: open it first.
    make_integration("heartbeat", name="First", heartbeat_minutes=5)
    clock.shift(timedelta(minutes=6))
    assert heartbeat_sweep_task() == 1

    counts = {}
    for silent in (2, 5):
        for n in range(silent):
            make_integration("heartbeat", name=f"Silent {silent}-{n}", heartbeat_minutes=5)
        clock.shift(timedelta(minutes=6))
        with django_assert_max_num_queries(CLAIM_QUERIES + silent * PER_SILENT) as queries:
            assert heartbeat_sweep_task() == silent
        counts[silent] = len(queries)
    # Fixed: the claim, and the policy rows each process keeps read again once per sweep when
    # their version token expired in the six minutes the clock moved (the maintenance windows,
    # the severity levels, the priority matrix).
    per_silent, rest = divmod(counts[5] - counts[2], 3)
    assert rest == 0
    assert counts[2] - 2 * per_silent <= CLAIM_QUERIES + KEPT_POLICY_READS


def test_a_failing_integration_does_not_stop_the_others(clock, monkeypatch):
    from incidents.detection import heartbeat

    first = make_integration("heartbeat", name="A job", heartbeat_minutes=5)
    make_integration("heartbeat", name="B job", heartbeat_minutes=5)
    real = heartbeat.incident_create

    def failing(**kwargs):
        if kwargs["title"].startswith("No signal from A job"):
            raise RuntimeError("boom")
        return real(**kwargs)

    monkeypatch.setattr(heartbeat, "incident_create", failing)
    clock.shift(timedelta(minutes=6))
    assert heartbeat_sweep_task() == 1
    first.refresh_from_db()
    assert first.heartbeat_incident_id is None and first.heartbeat_due_at is not None
    monkeypatch.setattr(heartbeat, "incident_create", real)
    assert heartbeat_sweep_task() == 1
    assert sorted(Incident.objects.values_list("title", flat=True)) == [
        "No signal from A job for 5 minutes",
        "No signal from B job for 5 minutes",
    ]
    assert TimelineEntry.objects.filter(kind=Kind.ALERT).count() == 2
