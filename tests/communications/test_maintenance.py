"""Scheduled maintenance through the API and the beat sweep: windows move by themselves at their
start and end (once, however often the sweep runs), their components go under maintenance and
back to what they were (unless someone changed them meanwhile), bad windows are refused with 400
and change nothing, and a Viewer may only read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from communications.models import (
    Component,
    ComponentStatus,
    ComponentStatusInterval,
    Maintenance,
)
from communications.services.components import component_create, component_status_set
from communications.tasks import maintenance_sweep_task
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
START = T0 + timedelta(days=2)
END = START + timedelta(hours=2)
URL = "/api/v1/maintenances/"


@pytest.fixture
def components(communications_lead):
    made = []
    for slug, name in (("checkout", "Checkout"), ("login", "Login"), ("search", "Search")):
        service = ServiceFactory(slug=slug, name=f"{name} (internal)", public_name=name)
        made.append(
            component_create(service=service, actor=communications_lead, at=T0 - timedelta(1))
        )
    return made


@pytest.fixture
def lead_api(api_as, communications_lead):
    return api_as(communications_lead)


def schedule(api, **overrides):
    payload = {
        "title": "Database upgrade",
        "body": "Checkout and login **may be slow**.",
        "scheduled_for": START.isoformat(),
        "scheduled_until": END.isoformat(),
        "components": ["checkout", "login"],
        **overrides,
    }
    with time_machine.travel(T0, tick=False):
        return api.post(URL, payload, format="json")


def statuses() -> dict[str, str]:
    return {c.code: c.status for c in Component.objects.select_related("service")}


def sweep_at(moment: datetime, times: int = 2) -> list[int]:
    with time_machine.travel(moment, tick=False):
        return [maintenance_sweep_task() for _ in range(times)]


def test_a_window_moves_by_itself_and_components_come_back(lead_api, components):
    response = schedule(lead_api)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["components"] == ["checkout", "login"]
    assert "<strong>may be slow</strong>" in body["body_html"]
    assert body["allowed_actions"] == ["edit", "start", "cancel"]

    assert sweep_at(START - timedelta(seconds=1)) == [0, 0]
    assert Maintenance.objects.get().status == "scheduled"

    assert sweep_at(START) == [1, 0]  # the second sweep finds nothing left to do
    maintenance = Maintenance.objects.get()
    assert (maintenance.status, maintenance.started_at) == ("in_progress", START)
    assert statuses() == {
        "checkout": "under_maintenance",
        "login": "under_maintenance",
        "search": "operational",
    }
    interval = ComponentStatusInterval.objects.get(
        component__service__slug="checkout", ended_at=None
    )
    assert (interval.maintenance_id, interval.started_at) == (maintenance.pk, START)

    assert sweep_at(END) == [1, 0]
    maintenance.refresh_from_db()
    assert (maintenance.status, maintenance.completed_at) == ("completed", END)
    assert statuses() == {
        "checkout": "operational",
        "login": "operational",
        "search": "operational",
    }
    assert sweep_at(END + timedelta(hours=1)) == [0, 0]
    # The history: operational, under maintenance for exactly the window, operational.
    rows = list(
        ComponentStatusInterval.objects.filter(component__service__slug="login")
        .order_by("started_at")
        .values_list("status", "started_at", "ended_at")
    )
    assert rows[1:] == [("under_maintenance", START, END), ("operational", END, None)]
    history = [r.history_change_reason for r in maintenance.history.order_by("history_id")]
    assert history == ["scheduled (api)", "started (system)", "completed (system)"]


def test_components_return_to_their_status_before_the_window(lead_api, components):
    checkout = components[0]
    component_status_set(
        component=checkout,
        status=ComponentStatus.DEGRADED_PERFORMANCE,
        actor=None,
        at=T0,
    )
    schedule(lead_api)
    sweep_at(START)
    sweep_at(END)
    assert statuses()["checkout"] == "degraded_performance"


def test_a_component_changed_during_the_window_is_left_as_it_is(lead_api, components):
    schedule(lead_api)
    sweep_at(START)
    # An incident during the maintenance: login goes into a major outage.
    component_status_set(
        component=components[1],
        status=ComponentStatus.MAJOR_OUTAGE,
        actor=None,
        reason="Login fails",
        at=START + timedelta(minutes=30),
    )
    sweep_at(END)
    assert statuses() == {
        "checkout": "operational",
        "login": "major_outage",
        "search": "operational",
    }


def test_overlapping_windows_hand_a_component_over(lead_api, components):
    schedule(lead_api)
    second = schedule(
        lead_api,
        title="Search reindex",
        scheduled_for=(START + timedelta(hours=1)).isoformat(),
        scheduled_until=(END + timedelta(hours=2)).isoformat(),
        components=["login", "search"],
    )
    assert second.status_code == 201
    sweep_at(START)
    sweep_at(START + timedelta(hours=1))
    sweep_at(END)  # the first ends; the second still holds login
    assert statuses() == {
        "checkout": "operational",
        "login": "under_maintenance",
        "search": "under_maintenance",
    }
    sweep_at(END + timedelta(hours=2))
    assert set(statuses().values()) == {"operational"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"scheduled_until": START.isoformat()}, "scheduled_until"),
        ({"scheduled_until": (START - timedelta(hours=1)).isoformat()}, "scheduled_until"),
        (
            {
                "scheduled_for": (T0 - timedelta(hours=3)).isoformat(),
                "scheduled_until": (T0 - timedelta(hours=1)).isoformat(),
            },
            "scheduled_until",
        ),
        ({"components": []}, "components"),
        ({"components": ["checkout", "nope"]}, "components"),
        ({"title": "   "}, "title"),
    ],
)
def test_bad_windows_are_refused_and_change_nothing(lead_api, components, overrides, field):
    response = schedule(lead_api, **overrides)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] in ("invalid", "invalid_input")  # the serializer's or the service's
    assert field in body["errors"]
    assert not Maintenance.objects.exists()


def test_a_start_already_past_is_started_by_the_next_sweep(lead_api, components):
    response = schedule(lead_api, scheduled_for=(T0 - timedelta(minutes=10)).isoformat())
    assert response.status_code == 201
    assert sweep_at(T0 + timedelta(seconds=30)) == [1, 0]
    assert statuses()["checkout"] == "under_maintenance"


def test_a_window_missed_entirely_is_completed_without_touching_components(lead_api, components):
    # Beat was down for the whole window: the components never went under maintenance, so
    # nothing is restored and no interval is written.
    schedule(lead_api)
    intervals = ComponentStatusInterval.objects.count()
    assert sweep_at(END + timedelta(minutes=5)) == [1, 0]
    maintenance = Maintenance.objects.get()
    assert (maintenance.status, maintenance.started_at) == ("completed", None)
    assert ComponentStatusInterval.objects.count() == intervals
    assert set(statuses().values()) == {"operational"}


def test_steps_by_hand_and_their_refusals(lead_api, components):
    pk = schedule(lead_api).json()["id"]
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        assert lead_api.post(f"{URL}{pk}/verify/").status_code == 409
        started = lead_api.post(f"{URL}{pk}/start/")
        assert started.json()["status"] == "in_progress"
        assert lead_api.post(f"{URL}{pk}/start/").status_code == 200  # idempotent
        refused = lead_api.post(f"{URL}{pk}/cancel/")
        assert refused.status_code == 409
        assert refused.json()["allowed_actions"] == ["edit", "verify", "complete"]
        assert lead_api.post(f"{URL}{pk}/verify/").json()["status"] == "verifying"
        assert statuses()["checkout"] == "under_maintenance"
        # While it runs only the title, body and end may change.
        frozen = lead_api.patch(f"{URL}{pk}/", {"components": ["search"]}, format="json")
        assert frozen.status_code == 400
        moved = lead_api.patch(
            f"{URL}{pk}/",
            {"scheduled_until": (END + timedelta(hours=1)).isoformat()},
            format="json",
        )
        assert moved.status_code == 200
        done = lead_api.post(f"{URL}{pk}/complete/")
        assert done.json()["status"] == "completed"
        assert lead_api.post(f"{URL}{pk}/complete/").status_code == 200
        assert lead_api.patch(f"{URL}{pk}/", {"title": "x"}, format="json").status_code == 409
    assert set(statuses().values()) == {"operational"}
    assert sweep_at(END + timedelta(hours=2)) == [0, 0]


def test_cancel_before_the_start_means_it_never_starts(lead_api, components):
    pk = schedule(lead_api).json()["id"]
    with time_machine.travel(T0, tick=False):
        assert lead_api.post(f"{URL}{pk}/cancel/").json()["status"] == "cancelled"
    assert sweep_at(START) == [0, 0]
    assert set(statuses().values()) == {"operational"}


def test_an_edit_that_ends_before_it_starts_changes_nothing(lead_api, components):
    pk = schedule(lead_api).json()["id"]
    with time_machine.travel(T0, tick=False):
        response = lead_api.patch(
            f"{URL}{pk}/",
            {"title": "Renamed", "scheduled_until": (START - timedelta(minutes=1)).isoformat()},
            format="json",
        )
    assert response.status_code == 400
    maintenance = Maintenance.objects.get()
    assert (maintenance.title, maintenance.scheduled_until) == ("Database upgrade", END)


def test_a_viewer_reads_but_may_not_schedule_or_step(api_as, viewer, lead_api, components):
    pk = schedule(lead_api).json()["id"]
    api = api_as(viewer)
    assert api.get(URL).status_code == 200
    assert api.get(f"{URL}{pk}/").json()["title"] == "Database upgrade"
    refused = schedule(api, title="Sneaky")
    assert refused.status_code == 403
    assert refused.json()["code"] == "action_forbidden"
    for action in ("start", "cancel", "complete", "verify"):
        assert api.post(f"{URL}{pk}/{action}/").status_code == 403
    assert api.patch(f"{URL}{pk}/", {"title": "x"}, format="json").status_code == 403
    assert Maintenance.objects.get().status == "scheduled"
    assert Maintenance.objects.count() == 1


def test_unknown_windows_are_404(lead_api, components):
    assert lead_api.get(f"{URL}999/").status_code == 404
    assert lead_api.get(f"{URL}abc/").status_code == 404
    assert lead_api.post(f"{URL}999/start/").status_code == 404


def test_the_list_takes_a_fixed_number_of_queries(
    lead_api, components, django_assert_max_num_queries
):
    for index in range(5):
        schedule(lead_api, title=f"Window {index}")
    with django_assert_max_num_queries(8):
        response = lead_api.get(URL)
    assert len(response.json()["results"]) == 5


def test_beat_queues_the_sweep_every_30_seconds_on_the_sweeps_queue(settings):
    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["communications-maintenance-sweep"]
    assert (entry["task"], entry["schedule"]) == ("communications.maintenance_sweep", 30.0)
    assert maintenance_sweep_task.name == entry["task"]
    route = app.amqp.router.route({}, entry["task"])
    assert route["queue"].name == "vigil.sweeps"


def test_the_list_filters_by_status(lead_api, components):
    kept = schedule(lead_api, title="Kept").json()["id"]
    cancelled = schedule(lead_api, title="Called off").json()["id"]
    with time_machine.travel(T0, tick=False):
        lead_api.post(f"{URL}{cancelled}/cancel/")
    scheduled = lead_api.get(URL, {"status": "scheduled"}).json()["results"]
    assert [window["id"] for window in scheduled] == [kept]
    assert [w["id"] for w in lead_api.get(URL, {"status": "cancelled"}).json()["results"]] == [
        cancelled
    ]
    refused = lead_api.get(URL, {"status": "done"})
    assert refused.status_code == 400
    assert "status" in refused.json()["errors"]
