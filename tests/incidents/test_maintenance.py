"""Maintenance windows: alerts firing while a window of their integration (or of the service
they are routed to) is active are recorded and page no one; their repeat after the window
opens or joins an incident whose timeline says so. Windows through the API and the admin,
bad input refused with nothing written, and the cost of processing with windows and rules."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from escalation.models import EscalationEvent, IncidentEscalation, Notification
from incidents.models import (
    Alert,
    Incident,
    IncidentEvent,
    Kind,
    MaintenanceWindow,
    TimelineEntry,
    WebhookDelivery,
)
from tests.events import followed
from tests.factories import ServiceFactory
from tests.incidents.detection_fixtures import (
    alertmanager_payload,
    at_now,  # noqa: F401
    fire_generic,
    hook_path,
    make_integration,
    post,
    resolved,
)
from tests.incidents.detection_fixtures import process_pending as process_raw

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

# The incidents' events are followed once a delivery's processing commits (paging,
# escalation), as the workers do.
process_pending = followed(process_raw)

WINDOW_NOTE = (
    "This alert first fired during maintenance window 'Database upgrade' "
    "(2026-11-27 09:30–10:00 UTC), when it was recorded and paged no one."
)


@pytest.fixture
def prometheus(service):
    return make_integration("alertmanager", service=service, auto_resolve=True)


@pytest.fixture
def clock(at_now):  # noqa: F811 (the traveller)
    return at_now


@pytest.fixture
def api(api_as, superuser):
    return api_as(superuser)


def at(hour: int, minute: int) -> str:
    return datetime(2026, 11, 27, hour, minute, tzinfo=UTC).isoformat()


def open_window(api, **data) -> MaintenanceWindow:
    data.setdefault("reason", "Database upgrade")
    data.setdefault("starts_at", at(9, 30))
    data.setdefault("ends_at", at(10, 0))
    response = api.post("/api/v1/maintenance-windows/", data, format="json")
    assert response.status_code == 201, response.json()
    return MaintenanceWindow.objects.get(pk=response.json()["id"])


def send_alertmanager(client, capture, integration, body) -> None:
    response, _ = post(
        client,
        hook_path(integration),
        body,
        capture=capture,
        Authorization=f"Bearer {integration.secret}",
    )
    assert response.status_code == 202, response.content
    assert process_pending() == ["processed"]


def send_generic(client, capture, integration, **data) -> None:
    fire_generic(client, capture, integration, **data)
    assert process_pending() == ["processed"]


def alert_entries(incident: Incident) -> list[str]:
    return list(
        TimelineEntry.objects.filter(incident=incident, kind=Kind.ALERT)
        .order_by("id")
        .values_list("message", flat=True)
    )


def assert_nobody_paged() -> None:
    assert Incident.objects.count() == 0
    assert IncidentEvent.objects.count() == 0
    assert Notification.objects.count() == 0
    assert EscalationEvent.objects.count() == 0
    assert IncidentEscalation.objects.count() == 0


# --- alerts during a window -----------------------------------------------------------------------


def test_alerts_during_a_window_are_recorded_and_their_repeat_after_it_opens_an_incident(
    client, django_capture_on_commit_callbacks, clock, api, prometheus, service
):
    window = open_window(api, integration=prometheus.pk)
    body = alertmanager_payload()

    send_alertmanager(client, django_capture_on_commit_callbacks, prometheus, body)
    alerts = list(Alert.objects.order_by("fingerprint"))
    assert [(a.status, a.incident_id, a.maintenance_id, a.count) for a in alerts] == [
        ("firing", None, window.pk, 1),
        ("firing", None, window.pk, 1),
    ]
    assert WebhookDelivery.objects.get().status == "processed"
    assert_nobody_paged()

    # Alertmanager repeats the group while it fires: counted, still nothing opened.
    send_alertmanager(client, django_capture_on_commit_callbacks, prometheus, body)
    assert [a.count for a in Alert.objects.order_by("fingerprint")] == [2, 2]
    assert_nobody_paged()

    # After the window: the repeat is new now, and opens the incident it would have opened.
    clock.move_to(datetime(2026, 11, 27, 10, 5, tzinfo=UTC))
    send_alertmanager(client, django_capture_on_commit_callbacks, prometheus, body)
    incident = Incident.objects.get()
    alerts = list(Alert.objects.order_by("fingerprint"))
    assert [(a.incident_id, a.maintenance_id) for a in alerts] == [
        (incident.pk, window.pk),
        (incident.pk, window.pk),
    ]
    assert (incident.severity_id, list(incident.services.all())) == (1, [service])
    assert alert_entries(incident) == [
        "Alert opened this incident: Error rate 7.2% on web-1 (Sev 1; alert rule Error Rate: "
        "escalate immediately). " + WINDOW_NOTE,
        "Alert joined: Error rate 6.1% on web-2 (Sev 1; alert rule Error Rate: escalate "
        'immediately). Grouped by same Alertmanager group ({}/{service="checkout"}:'
        '{alertname="HighErrorRate"}). ' + WINDOW_NOTE,
    ]
    # Paged now, as any incident of this rule: the team, and the matrix's first step at once.
    assert Notification.objects.filter(incident=incident).exists()
    assert EscalationEvent.objects.filter(incident=incident).exists()

    # Its further repeats are repeats again.
    send_alertmanager(client, django_capture_on_commit_callbacks, prometheus, body)
    assert Incident.objects.count() == 1 and len(alert_entries(incident)) == 2


def test_during_a_window_new_alerts_stay_out_of_the_groups_active_incident(
    client, django_capture_on_commit_callbacks, clock, api, service
):
    generic = make_integration("generic", service=service)
    send_generic(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Queue backlog",
        group_key="payments",
        dedup_key="backlog",
        severity="warning",
    )
    incident = Incident.objects.get()
    assert incident.severity_id == 3
    paged_before = Notification.objects.count()

    window = open_window(api, integration=generic.pk, starts_at=at(9, 45))
    send_generic(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Payments down",
        group_key="payments",
        dedup_key="down",
        severity="critical",
    )
    down = Alert.objects.get(fingerprint="down")
    assert (down.incident_id, down.maintenance_id) == (None, window.pk)
    incident.refresh_from_db()
    # Not joined, no severity raised, nobody paged again.
    assert incident.severity_id == 3
    assert incident.alerts.count() == 1
    assert not incident.timeline.filter(kind=Kind.SEVERITY).exists()
    assert Notification.objects.count() == paged_before

    # The window ends early (PATCH ends_at to now); the alert's repeat joins the incident.
    response = api.patch(
        f"/api/v1/maintenance-windows/{window.pk}/",
        {"ends_at": timezone.now().isoformat()},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["active"] is False
    clock.shift(60)
    send_generic(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Payments down",
        group_key="payments",
        dedup_key="down",
        severity="critical",
    )
    down.refresh_from_db()
    incident.refresh_from_db()
    assert (down.incident_id, down.maintenance_id) == (incident.pk, window.pk)
    assert incident.severity_id == 1
    window.refresh_from_db()
    joined = alert_entries(incident)[-1]
    assert joined.startswith("Alert joined: Payments down (Sev 1;")
    assert joined.endswith(
        "This alert first fired during maintenance window 'Database upgrade' "
        f"(2026-11-27 09:45–{window.ends_at:%H:%M} UTC), when it was recorded and paged no one."
    )


def test_a_service_window_silences_alerts_routed_to_it_from_any_integration(
    client, django_capture_on_commit_callbacks, api, prometheus, service
):
    generic = make_integration("generic")
    response = api.post(
        f"/api/v1/integrations/{generic.pk}/routing-rules/",
        {"match": {"team": "payments"}, "service": service.slug},
        format="json",
    )
    assert response.status_code == 201, response.json()
    window = open_window(api, service=service.slug)

    send_alertmanager(
        client, django_capture_on_commit_callbacks, prometheus, alertmanager_payload()
    )
    send_generic(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Card payments failing",
        labels={"team": "payments"},
    )
    assert set(Alert.objects.values_list("maintenance_id", "incident_id")) == {(window.pk, None)}
    assert Alert.objects.count() == 3
    assert_nobody_paged()

    # Not routed to the service in maintenance: an incident as usual.
    send_generic(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Search slow",
        labels={"team": "search"},
    )
    search = Alert.objects.get(title="Search slow")
    assert search.maintenance_id is None and search.incident is not None
    assert Incident.objects.count() == 1


def test_a_window_of_another_integration_or_not_yet_started_silences_nothing(
    client, django_capture_on_commit_callbacks, api, prometheus
):
    other = make_integration("grafana")
    open_window(api, integration=other.pk)
    open_window(api, integration=prometheus.pk, starts_at=at(11, 0), ends_at=at(12, 0))
    send_alertmanager(
        client, django_capture_on_commit_callbacks, prometheus, alertmanager_payload()
    )
    assert Incident.objects.count() == 1
    assert not Alert.objects.filter(maintenance__isnull=False).exists()


def test_resolves_during_a_window_are_applied(
    client, django_capture_on_commit_callbacks, api, prometheus
):
    body = alertmanager_payload()
    first = copy.deepcopy(body)
    first["alerts"] = first["alerts"][:1]
    send_alertmanager(client, django_capture_on_commit_callbacks, prometheus, first)
    incident = Incident.objects.get()

    open_window(api, integration=prometheus.pk, starts_at=at(9, 45))
    send_alertmanager(client, django_capture_on_commit_callbacks, prometheus, body)
    recorded = Alert.objects.get(fingerprint=body["alerts"][1]["fingerprint"])
    assert recorded.incident_id is None and recorded.maintenance_id is not None

    send_alertmanager(client, django_capture_on_commit_callbacks, prometheus, resolved(body))
    assert set(Alert.objects.values_list("status", flat=True)) == {"resolved"}
    incident.refresh_from_db()
    # The incident's only alert resolved: auto-resolve moves it to monitoring, as always.
    assert incident.status == "monitoring"
    assert "Alert resolved: Error rate 7.2% on web-1." in alert_entries(incident)


# --- the API --------------------------------------------------------------------------------------


def test_api_lists_creates_and_ends_windows(api, prometheus, superuser):
    window = open_window(api, integration=prometheus.pk)
    body = api.get("/api/v1/maintenance-windows/").json()
    assert body["results"] == [
        {
            "id": window.pk,
            "reason": "Database upgrade",
            "integration": prometheus.pk,
            "service": None,
            "starts_at": "2026-11-27T09:30:00Z",
            "ends_at": "2026-11-27T10:00:00Z",
            "active": True,
            "created_by": {
                "id": superuser.pk,
                "username": "root",
                "name": superuser.get_full_name() or "root",
            },
            "created_at": body["results"][0]["created_at"],
        }
    ]
    assert window.created_by == superuser
    assert window.history.get().history_user == superuser
    assert [w["id"] for w in api.get("/api/v1/maintenance-windows/?active=true").json()["results"]]
    assert api.get("/api/v1/maintenance-windows/?active=false").json()["results"] == []

    # Extended, then ended early: an end in the past ends it now.
    url = f"/api/v1/maintenance-windows/{window.pk}/"
    response = api.patch(url, {"ends_at": at(11, 0)}, format="json")
    assert response.status_code == 200 and response.json()["ends_at"] == "2026-11-27T11:00:00Z"
    before = timezone.now()
    response = api.patch(url, {"ends_at": at(9, 40)}, format="json")
    assert response.status_code == 200 and response.json()["active"] is False
    window.refresh_from_db()
    assert before <= window.ends_at <= timezone.now()

    # An ended window is kept as it was.
    response = api.patch(url, {"ends_at": at(12, 0)}, format="json")
    assert response.status_code == 400
    assert "has ended" in response.json()["errors"]["ends_at"][0]
    assert api.get(url).json()["ends_at"] == window.ends_at.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "data, field",
    [
        ({"ends_at": "2026-11-27T10:00:00Z"}, "integration"),  # no target
        ({"integration": 999_999, "ends_at": "2026-11-27T10:00:00Z"}, "integration"),
        ({"service": "nope", "ends_at": "2026-11-27T10:00:00Z"}, "service"),
        ({"target": "x", "integration": "me", "ends_at": "2026-11-27T10:00:00Z"}, "integration"),
        ({"integration": "own", "ends_at": "2026-11-27T09:00:00Z"}, "ends_at"),  # before start
        (  # already ended
            {
                "integration": "own",
                "starts_at": "2026-11-27T08:00:00Z",
                "ends_at": "2026-11-27T09:00:00Z",
            },
            "ends_at",
        ),
        ({"integration": "own", "ends_at": "2027-02-01T10:00:00Z"}, "ends_at"),  # too long
        ({"integration": "own", "ends_at": "tomorrow"}, "ends_at"),
        ({"integration": "own"}, "ends_at"),
        ({"integration": "own", "ends_at": "2026-11-27T10:00:00Z", "reason": ""}, "reason"),
    ],
)
def test_api_refuses_bad_windows_and_creates_nothing(api, prometheus, data, field):
    data = dict(data)
    data.setdefault("reason", "Database upgrade")
    if data.get("integration") == "own":
        data["integration"] = prometheus.pk
    response = api.post("/api/v1/maintenance-windows/", data, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert MaintenanceWindow.objects.count() == 0


def test_role_groups_cannot_manage_windows(api_as, incident_manager, viewer, prometheus):
    for user in (incident_manager, viewer):
        client = api_as(user)
        assert client.get("/api/v1/maintenance-windows/").status_code == 403
        response = client.post(
            "/api/v1/maintenance-windows/",
            {"reason": "x", "integration": prometheus.pk, "ends_at": at(10, 0)},
            format="json",
        )
        assert response.status_code == 403
    assert MaintenanceWindow.objects.count() == 0


def test_windows_are_in_the_api_schema(api):
    paths = api.get("/api/schema/?format=json").json()["paths"]
    assert set(paths["/api/v1/maintenance-windows/"]) >= {"get", "post"}
    assert "patch" in paths["/api/v1/maintenance-windows/{id}/"]


# --- the admin ------------------------------------------------------------------------------------


def _window_form(**changes) -> dict[str, str]:
    data = {
        "reason": "Database upgrade",
        "integration": "",
        "service": "",
        "starts_at_0": "2026-11-27",
        "starts_at_1": "09:30:00",
        "ends_at_0": "2026-11-27",
        "ends_at_1": "10:00:00",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({}, "integration", "Choose the integration or the service"),
        ({"integration": "own", "ends_at_1": "09:00:00"}, "ends_at", "must end after it starts"),
        (
            {"integration": "own", "starts_at_1": "08:00:00", "ends_at_1": "09:00:00"},
            "ends_at",
            "would already have ended",
        ),
    ],
)
def test_admin_form_refuses_bad_windows(client, superuser, prometheus, changes, field, message):
    client.force_login(superuser)
    if changes.get("integration") == "own":
        changes["integration"] = str(prometheus.pk)
    response = client.post("/admin/incidents/maintenancewindow/add/", _window_form(**changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert MaintenanceWindow.objects.count() == 0


def test_admin_adds_lists_and_ends_a_window(client, superuser, prometheus):
    client.force_login(superuser)
    response = client.post(
        "/admin/incidents/maintenancewindow/add/",
        _window_form(integration=str(prometheus.pk)),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    window = MaintenanceWindow.objects.get()
    assert (window.integration, window.created_by) == (prometheus, superuser)
    assert window.history.get().history_change_reason == "created via admin"

    page = client.get("/admin/incidents/maintenancewindow/").content.decode()
    assert "Database upgrade" in page and f"integration {prometheus.name}" in page
    assert 'alt="True"' in page  # active now
    assert (
        "Database upgrade"
        in client.get("/admin/incidents/maintenancewindow/?state=active").content.decode()
    )
    assert (
        "Database upgrade"
        not in client.get("/admin/incidents/maintenancewindow/?state=ended").content.decode()
    )

    # Ending it early: the end set to now.
    now = timezone.localtime()
    response = client.post(
        f"/admin/incidents/maintenancewindow/{window.pk}/change/",
        {
            "reason": "Database upgrade",
            "ends_at_0": f"{now:%Y-%m-%d}",
            "ends_at_1": f"{now:%H:%M:%S}",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    window.refresh_from_db()
    assert window.ends_at <= timezone.now()
    # Ended: shown, no longer changed.
    page = client.get(f"/admin/incidents/maintenancewindow/{window.pk}/change/")
    assert page.status_code == 200 and 'name="reason"' not in page.content.decode()


@pytest.mark.parametrize(
    "action, hours", [("put_in_maintenance_1h", 1), ("put_in_maintenance_4h", 4)]
)
def test_integration_list_action_puts_integrations_in_maintenance(
    client, superuser, prometheus, action, hours
):
    other = make_integration("grafana")
    client.force_login(superuser)
    response = client.post(
        "/admin/incidents/integration/",
        {"action": action, "_selected_action": [prometheus.pk, other.pk]},
        follow=True,
    )
    assert "2 integration(s) in maintenance until" in response.content.decode()
    windows = list(MaintenanceWindow.objects.order_by("integration_id"))
    assert [w.integration for w in windows] == [prometheus, other]
    for window in windows:
        assert window.ends_at - window.starts_at == timedelta(hours=hours)
        assert window.starts_at <= timezone.now() < window.ends_at
        assert window.created_by == superuser


def test_alert_admin_shows_the_window_an_alert_was_recorded_in(
    client, django_capture_on_commit_callbacks, superuser, api, prometheus
):
    window = open_window(api, integration=prometheus.pk)
    send_alertmanager(
        client, django_capture_on_commit_callbacks, prometheus, alertmanager_payload()
    )
    client.force_login(superuser)
    page = client.get("/admin/incidents/alert/").content.decode()
    assert "Maintenance" in page and str(window) in page
    alert = Alert.objects.first()
    assert str(window) in client.get(f"/admin/incidents/alert/{alert.pk}/change/").content.decode()


# --- cost -----------------------------------------------------------------------------------------


def _processing_queries(client, capture, integration) -> int:
    response, _ = post(
        client,
        hook_path(integration),
        alertmanager_payload(),
        capture=capture,
        Authorization=f"Bearer {integration.secret}",
    )
    assert response.status_code == 202
    with CaptureQueriesContext(connection) as queries:
        assert process_raw() == ["processed"]
    return len(queries)


def test_windows_and_routing_rules_add_a_constant_number_of_queries(
    client, django_capture_on_commit_callbacks, django_assert_max_num_queries, api, service
):
    plain = make_integration("alertmanager", name="plain", service=service)
    baseline = _processing_queries(client, django_capture_on_commit_callbacks, plain)
    assert Incident.objects.count() == 1

    routed = make_integration("alertmanager", name="routed", service=service)
    elsewhere = ServiceFactory(slug="search")
    for position in range(8):
        api.post(
            f"/api/v1/integrations/{routed.pk}/routing-rules/",
            {"position": position, "match": {"job": "checkout"}, "service": service.slug},
            format="json",
        )
    for index in range(6):
        open_window(api, service=elsewhere.slug, reason=f"Search work {index}")
        open_window(api, integration=plain.pk, reason=f"Plain work {index}")
    response, _ = post(
        client,
        hook_path(routed),
        alertmanager_payload(),
        capture=django_capture_on_commit_callbacks,
        Authorization=f"Bearer {routed.secret}",
    )
    assert response.status_code == 202
    # The routing rules and the active windows are read in one query each (made with none
    # too): eight rules and twelve windows cost what none do.
    with django_assert_max_num_queries(baseline):
        assert process_raw() == ["processed"]
    assert Incident.objects.count() == 2
