"""The status page's catalogue and maintenance in the admin: the communications lead adds groups
and components, changes a status only with a reason, schedules a window and moves it with the
buttons; an end before the start is a form error with nothing saved; a Viewer reads every page
and is refused every write (403)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from communications.models import (
    Component,
    ComponentGroup,
    ComponentStatusInterval,
    Maintenance,
    StatusPageSettings,
)
from communications.services.components import component_create
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ADMIN = "/admin/communications"


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def lead(communications_lead):
    return login(communications_lead)


@pytest.fixture
def checkout(communications_lead):
    service = ServiceFactory(slug="checkout", name="Payments (internal)", public_name="Checkout")
    return component_create(service=service, actor=communications_lead, at=T0 - timedelta(days=3))


def component_form(component: Component, **changes) -> dict:
    data = {
        "group": component.group_id or "",
        "position": component.position,
        "description": component.description,
        "status": component.status,
        "reason": "",
        "showcase": "on" if component.showcase else "",
        "start_date": component.start_date.isoformat(),
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def window_form(**changes) -> dict:
    start = T0 + timedelta(days=2)
    data = {
        "title": "Database upgrade",
        "body": "Checkout may be slow.",
        "scheduled_for_0": start.strftime("%Y-%m-%d"),
        "scheduled_for_1": start.strftime("%H:%M:%S"),
        "scheduled_until_0": start.strftime("%Y-%m-%d"),
        "scheduled_until_1": (start + timedelta(hours=2)).strftime("%H:%M:%S"),
    }
    data.update(changes)
    return data


def test_the_lead_adds_a_group_and_a_component(lead):
    response = lead.post(f"{ADMIN}/componentgroup/add/", {"name": "Shop", "position": 1})
    assert response.status_code == 302
    group = ComponentGroup.objects.get()
    ServiceFactory(slug="login", name="SSO", public_name="Login")
    response = lead.post(
        f"{ADMIN}/component/add/",
        {
            "service": ServiceFactory._meta.model.objects.get(slug="login").pk,
            "group": group.pk,
            "position": 0,
            "description": "Sign-in",
            "status": "operational",
            "showcase": "on",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    component = Component.objects.get()
    assert (component.group, component.name) == (group, "Login")
    assert component.intervals.count() == 1


def test_a_status_change_needs_a_reason_and_is_kept_with_it(lead, checkout, communications_lead):
    url = f"{ADMIN}/component/{checkout.pk}/change/"
    refused = lead.post(url, component_form(checkout, status="major_outage"))
    assert refused.status_code == 200
    assert "reason" in refused.context["adminform"].form.errors
    checkout.refresh_from_db()
    assert checkout.status == "operational"

    accepted = lead.post(
        url, component_form(checkout, status="major_outage", reason="Payments down")
    )
    assert accepted.status_code == 302
    checkout.refresh_from_db()
    assert checkout.status == "major_outage"
    current = ComponentStatusInterval.objects.get(component=checkout, ended_at=None)
    assert (current.reason, current.actor) == ("Payments down (admin)", communications_lead)
    page = lead.get(url).content.decode()
    assert "Payments down (admin)" in page  # the recent status history


def test_a_maintenance_scheduled_and_moved_with_the_buttons(lead, checkout):
    with time_machine.travel(T0, tick=False):
        response = lead.post(f"{ADMIN}/maintenance/add/", window_form(components=[checkout.pk]))
        assert response.status_code == 302, response.context["adminform"].form.errors
        window = Maintenance.objects.get()
        page = lead.get(f"{ADMIN}/maintenance/{window.pk}/change/").content.decode()
        assert "Start now" in page and "Cancel the maintenance" in page
        assert "Complete now" not in page
        started = lead.post(f"{ADMIN}/maintenance/{window.pk}/step/start/")
        assert started.status_code == 302
        checkout.refresh_from_db()
        assert checkout.status == "under_maintenance"
        refused = lead.post(f"{ADMIN}/maintenance/{window.pk}/step/cancel/", follow=True)
        assert "Nothing changed" in refused.content.decode()
        lead.post(f"{ADMIN}/maintenance/{window.pk}/step/complete/")
    window.refresh_from_db()
    checkout.refresh_from_db()
    assert (window.status, checkout.status) == ("completed", "operational")


def test_an_end_before_the_start_is_a_form_error_and_saves_nothing(lead, checkout):
    start = T0 + timedelta(days=2)
    with time_machine.travel(T0, tick=False):
        response = lead.post(
            f"{ADMIN}/maintenance/add/",
            window_form(
                components=[checkout.pk],
                scheduled_until_1=(start - timedelta(hours=1)).strftime("%H:%M:%S"),
            ),
        )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["scheduled_until"] == ["The window must end after it starts."]
    assert not Maintenance.objects.exists()


def test_the_page_settings_refuse_an_unknown_time_zone(lead):
    page = StatusPageSettings.objects.get()
    assert lead.get(f"{ADMIN}/statuspagesettings/").url.endswith(f"/{page.pk}/change/")
    url = f"{ADMIN}/statuspagesettings/{page.pk}/change/"
    refused = lead.post(url, {"name": "Acme status", "time_zone": "Mars/Olympus"})
    assert refused.status_code == 200
    assert "time_zone" in refused.context["adminform"].form.errors
    page.refresh_from_db()
    assert (page.name, page.time_zone) == ("Service status", "UTC")
    assert lead.post(url, {"name": "Acme status", "time_zone": "Europe/Paris"}).status_code == 302
    page.refresh_from_db()
    assert (page.name, page.time_zone) == ("Acme status", "Europe/Paris")


def test_a_viewer_reads_and_is_refused_every_write(viewer, checkout, communications_lead):
    client = login(viewer)
    window = Maintenance.objects.create(
        title="Upgrade",
        scheduled_for=T0 + timedelta(days=1),
        scheduled_until=T0 + timedelta(days=1, hours=1),
        created_by=communications_lead,
    )
    window.components.set([checkout])
    for page in ("component", "componentgroup", "maintenance"):
        assert client.get(f"{ADMIN}/{page}/").status_code == 200
    detail = client.get(f"{ADMIN}/maintenance/{window.pk}/change/")
    assert detail.status_code == 200
    assert "Start now" not in detail.content.decode()
    assert client.get(f"{ADMIN}/maintenance/add/").status_code == 403
    assert client.get(f"{ADMIN}/component/add/").status_code == 403
    assert client.post(f"{ADMIN}/maintenance/{window.pk}/step/start/").status_code == 403
    changed = client.post(
        f"{ADMIN}/component/{checkout.pk}/change/",
        component_form(checkout, status="major_outage", reason="x"),
    )
    assert changed.status_code == 403
    checkout.refresh_from_db()
    window.refresh_from_db()
    assert (checkout.status, window.status) == ("operational", "scheduled")


def test_unknown_windows_and_steps_are_refused_by_the_buttons(lead, checkout):
    assert lead.post(f"{ADMIN}/maintenance/999/step/start/").status_code == 404
    assert lead.post(f"{ADMIN}/maintenance/abc/step/start/").status_code == 404
    assert lead.get(f"{ADMIN}/maintenance/999/step/start/").status_code == 405


def test_cancel_selected_cancels_what_has_not_started_and_says_what_it_refused(
    lead, viewer, checkout, communications_lead
):
    windows = []
    for title in ("Later", "Running"):
        window = Maintenance.objects.create(
            title=title,
            scheduled_for=T0 + timedelta(days=1),
            scheduled_until=T0 + timedelta(days=1, hours=1),
        )
        window.components.set([checkout])
        windows.append(window)
    with time_machine.travel(T0, tick=False):
        lead.post(f"{ADMIN}/maintenance/{windows[1].pk}/step/start/")
        response = lead.post(
            f"{ADMIN}/maintenance/",
            {"action": "cancel_selected", "_selected_action": [w.pk for w in windows]},
            follow=True,
        )
    page = response.content.decode()
    assert "Cancelled 1 maintenance window(s)." in page
    assert "Not cancelled: “Running”: Cannot cancel a maintenance that is in progress" in page
    statuses = dict(Maintenance.objects.values_list("title", "status"))
    assert statuses == {"Later": "cancelled", "Running": "in_progress"}
    listing = login(viewer).get(f"{ADMIN}/maintenance/").content.decode()
    assert "cancel_selected" not in listing
