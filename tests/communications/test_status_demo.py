"""The status page demo (``manage.py status_demo``, run by ``make run`` after ``demo_data``):
components with 90 days of history and a few bad days, the demo incidents' published updates
with restoration notices, one component degraded now, a maintenance next week and one in the
past; loaded once (a second run changes nothing); refused where demo_data is refused."""

from __future__ import annotations

import io
import itertools
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from communications.models import (
    Component,
    ComponentGroup,
    ComponentStatusInterval,
    Maintenance,
    StatusUpdate,
    UpdateKind,
    UpdateState,
)
from incidents.models import Incident
from tests.events import follow_events
from tests.scoped_rows import scoped_rows

pytestmark = pytest.mark.django_db

LOAD = {} if connection.vendor == "sqlite" else {"force": True}


def run(command: str = "status_demo", **options) -> str:
    out = io.StringIO()
    call_command(command, stdout=out, **options)
    return out.getvalue()


def _load() -> str:
    with override_settings(DEBUG=True):
        run("demo_data", **LOAD)
        return run(**LOAD)


@pytest.fixture(scope="class")
def loaded_rows(django_db_setup, django_db_blocker):
    yield from scoped_rows(django_db_blocker, _load)


@pytest.fixture
def loaded(db, loaded_rows) -> str:
    return loaded_rows


def snapshot() -> dict:
    return {
        "components": sorted(Component.objects.values_list("service__slug", "status", "group")),
        "intervals": ComponentStatusInterval.objects.count(),
        "updates": sorted(StatusUpdate.objects.values_list("pk", "state", "published_at")),
        "maintenance": sorted(Maintenance.objects.values_list("title", "status")),
        "component_history": Component.history.count(),
    }


class TestOneLoad:
    """One load of both demos for these tests (each test's writes are rolled back)."""

    def test_the_page_has_real_looking_history(self, loaded):
        assert "Status page demo ready" in loaded
        components = {c.code: c for c in Component.objects.select_related("service", "group")}
        assert set(components) == {"web-app", "checkout", "auth", "cdn", "email-provider"}
        assert ComponentGroup.objects.get().name == "Online store"
        assert {components[code].group.name for code in ("web-app", "checkout", "auth")} == {
            "Online store"
        }
        # Public names only, never the internal ones.
        assert components["checkout"].name == "Checkout and payments"
        # One component degraded now, the others operational.
        now = {code: c.status for code, c in components.items()}
        assert now.pop("cdn") == "degraded_performance"
        assert set(now.values()) == {"operational"}
        # 90 days of history, written forward in time, with bad days.
        today = timezone.localdate()
        for component in components.values():
            assert component.start_date == today - timedelta(days=90)
            rows = list(component.intervals.order_by("started_at", "pk"))
            assert all(a.ended_at == b.started_at for a, b in itertools.pairwise(rows))
            assert rows[-1].ended_at is None
        bad = ComponentStatusInterval.objects.filter(status__in=["partial_outage", "major_outage"])
        assert bad.count() >= 4
        maintenance_minutes = ComponentStatusInterval.objects.filter(
            status="under_maintenance", maintenance__isnull=False
        )
        assert maintenance_minutes.count() == 2  # the past window on two components

    def test_the_demo_incidents_have_published_updates_and_restoration_notices(self, loaded):
        published = StatusUpdate.objects.filter(state=UpdateState.PUBLISHED)
        assert published.count() == 9
        restored = published.filter(kind=UpdateKind.RESTORATION)
        assert sorted(restored.values_list("incident__status", flat=True)) == ["closed", "resolved"]
        # Under the name customers know the incident by.
        assert set(restored.values_list("public_title", flat=True)) == {
            "Checkout unavailable",
            "Order confirmation emails delayed",
        }
        for update in published.select_related("incident"):
            assert update.incident.title not in update.public_title  # customer-safe titles
            assert update.published_at <= timezone.now()
            assert update.body_html
        failover = Incident.objects.get(title__startswith="Orders database failover")
        assert failover.status_updates.filter(approved_by__username="omar").count() == 4
        # The open incidents have no public post yet (the 30-minute clock runs for the login one).
        for title in ("Login takes more than 5 seconds", "Card payments fail at checkout"):
            incident = Incident.objects.get(title__startswith=title)
            assert not incident.status_updates.exists()

    def test_following_the_incidents_later_adds_no_second_restoration_notice(self, loaded):
        # The worker follows the demo incidents' events once `make run` starts: the resolved
        # incidents' restoration notices are the published ones, not new drafts.
        follow_events()
        restorations = StatusUpdate.objects.filter(kind=UpdateKind.RESTORATION)
        assert list(restorations.values_list("state", flat=True)) == ["published"] * 2

    def test_maintenance_next_week_and_one_completed(self, loaded):
        upcoming = Maintenance.objects.get(status="scheduled")
        assert timedelta(days=6) < upcoming.scheduled_for - timezone.now() < timedelta(days=8)
        assert list(upcoming.components.values_list("service__slug", flat=True)) == ["checkout"]
        past = Maintenance.objects.get(status="completed")
        assert past.completed_at < timezone.now()

    def test_customers_and_subscribers_for_messaging(self, loaded):
        from communications.models import Customer, Subscriber

        enterprise = Customer.objects.get(plan="enterprise")
        assert enterprise.needs_direct_contact
        assert enterprise.account_owner.username == "omar"
        assert enterprise.contacts.filter(incident_email=True).count() == 2
        assert {s.slug for s in enterprise.services.all()} == {"web-app", "checkout", "auth"}
        assert Customer.objects.filter(plan="standard").count() == 1
        active = Subscriber.objects.filter(state="active", kind="email")
        assert active.count() == 2
        chosen = active.get(all_components=False)
        assert [c.service.slug for c in chosen.components.all()] == ["checkout"]
        assert "2 customers, 2 subscribers" in loaded

    def test_a_second_run_changes_nothing(self, loaded, settings):
        settings.DEBUG = True
        before = snapshot()
        output = run(**LOAD)
        assert "already there" in output
        assert snapshot() == before


def test_refused_with_debug_off_and_nothing_changed(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG off"):
        run()
    assert not Component.objects.exists()


@pytest.mark.postgres
def test_a_database_that_is_not_the_embedded_sqlite_is_refused(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError, match="not the embedded SQLite"):
        run(keep_existing=True)
    assert not Component.objects.exists()


def test_keep_existing_leaves_a_used_database_as_it_is(settings):
    settings.DEBUG = True
    if connection.vendor != "sqlite":
        pytest.skip("the guard refuses any database but the embedded SQLite")
    get_user_model().objects.create_user("alice", "alice@corp.example", "alices-own-pass-77")
    output = run(keep_existing=True)
    assert "kept as it is" in output
    assert not Component.objects.exists()


def test_without_the_incident_demo_it_says_so(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError, match="demo_data"):
        run(**LOAD)
    assert not Component.objects.exists()


def test_an_incident_demo_loaded_long_ago_gets_history_from_its_first_incident(settings):
    settings.DEBUG = True
    long_ago = timezone.now() - timedelta(days=120)
    with time_machine.travel(long_ago, tick=False):
        run("demo_data", **LOAD)
    run(**LOAD)
    first = Incident.objects.order_by("detected_at").first()
    for component in Component.objects.all():
        assert component.start_date <= timezone.localdate(first.detected_at)
    assert StatusUpdate.objects.filter(state=UpdateState.PUBLISHED).count() == 9
