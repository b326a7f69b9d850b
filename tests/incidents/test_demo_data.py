"""The demo data command: runs, is idempotent, covers the states, and its timelines are real; it
refuses a database that holds anything but the demo (a real admin, other users, a server
database) unless forced."""

from __future__ import annotations

import io
from datetime import time, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from incidents.management import demo, demo_integrations, demo_stories
from incidents.models import (
    Contact,
    EscalationContact,
    Incident,
    Integration,
    IntegrationKind,
    Kind,
    MaintenanceWindow,
    ResponseRole,
    RoleAssignment,
    RoutingRule,
    Service,
    SlaBreach,
    Status,
    TimelineEntry,
)
from incidents.tasks import heartbeat_sweep_task
from tests.scoped_rows import scoped_rows

pytestmark = pytest.mark.django_db

# The loads that test the demo's content run as `make run` runs them: on the embedded SQLite
# (the in-memory test database counts as embedded). On PostgreSQL, a database the guard refuses
# (tested below), they run forced.
LOAD = {} if connection.vendor == "sqlite" else {"force": True}
embedded_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the guard refuses any database but the embedded SQLite"
)


def run(**options) -> str:
    out = io.StringIO()
    call_command("demo_data", stdout=out, **options)
    return out.getvalue()


def snapshot() -> dict[str, object]:
    """Everything the demo writes, in comparable form (password hashes excepted)."""
    User = get_user_model()
    return {
        "users": sorted(
            User.objects.values_list(
                "username", "first_name", "last_name", "email", "is_staff", "is_superuser"
            )
        ),
        "groups": sorted(User.groups.through.objects.values_list("user__username", "group__name")),
        "contacts": sorted(Contact.objects.values_list("name", "email", "phone", "user__username")),
        "roles": sorted(
            ResponseRole.objects.values_list("key", "primary_contact__name", "backup_contact__name")
        ),
        "escalation": sorted(EscalationContact.objects.values_list("key", "contact__name")),
        "services": sorted(Service.objects.values_list("slug", "name", "owner__username")),
        "incidents": sorted(
            Incident.objects.values_list("number", "title", "status", "severity", "updated_at")
        ),
        "timeline": TimelineEntry.objects.count(),
        "assignments": RoleAssignment.objects.count(),
        "breaches": SlaBreach.objects.count(),
        "incident_history": Incident.history.count(),
        "service_history": Service.history.count(),
        "contact_history": Contact.history.count(),
        "role_history": ResponseRole.history.count(),
        "integrations": sorted(
            Integration.objects.values_list(
                "name", "kind", "key", "secret", "service__slug", "last_signal_at", "updated_at"
            )
        ),
        "routing_rules": sorted(
            (str(match), service)
            for match, service in RoutingRule.objects.values_list("match", "service__slug")
        ),
        "windows": sorted(MaintenanceWindow.objects.values_list("reason", "starts_at", "ends_at")),
        "integration_history": Integration.history.count(),
        "routing_rule_history": RoutingRule.history.count(),
        "window_history": MaintenanceWindow.history.count(),
    }


@pytest.fixture
def debug(settings):
    settings.DEBUG = True


def _load() -> str:
    with override_settings(DEBUG=True):
        return run(**LOAD)


@pytest.fixture(scope="class")
def loaded_rows(django_db_setup, django_db_blocker):
    """One load of the demo for the tests of TestOneLoad (each test's writes are rolled back
    after it); the output of that first run."""
    yield from scoped_rows(django_db_blocker, _load)


@pytest.fixture
def loaded(db, loaded_rows) -> str:
    return loaded_rows


def test_refuses_to_run_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG off"):
        run()
    assert _nothing_loaded(users=0)
    assert not Incident.objects.exists()
    assert not get_user_model().objects.filter(username=demo.SUPERUSER).exists()


def test_force_runs_with_debug_off(settings):
    settings.DEBUG = False
    run(force=True)
    assert Incident.objects.count() == len(demo_stories.STORIES)


class TestOneLoad:
    """Tests that start from one run of the command, made once for all of them."""

    def test_loads_and_prints_the_logins(self, loaded):
        output = loaded
        assert f"Log in as {demo.SUPERUSER} / {demo.DEMO_PASSWORD}" in output
        for incident in Incident.objects.all():
            assert incident.number in output
        for person in demo.PEOPLE:
            assert person.username in output

    def test_is_idempotent(self, loaded, debug):
        first = snapshot()
        output = run(**LOAD)
        assert snapshot() == first
        assert "(created)" not in output
        assert output.count("(already there)") == len(demo_stories.STORIES) + len(
            demo_integrations.INTEGRATIONS
        )

    @embedded_only
    def test_a_rerun_keeps_a_changed_password_and_refuses_unless_forced(self, loaded, debug):
        User = get_user_model()
        admin = User.objects.get(username=demo.SUPERUSER)
        admin.set_password("something-else-entirely")
        admin.save()
        with pytest.raises(CommandError, match="admin"):
            run()
        admin.refresh_from_db()
        assert admin.check_password("something-else-entirely")

        run(force=True)
        admin.refresh_from_db()
        assert admin.is_superuser and admin.is_staff
        assert admin.check_password(demo.DEMO_PASSWORD)
        assert User.objects.get(username="maria").check_password(demo.DEMO_PASSWORD)

    def test_every_state_is_present(self, loaded):
        statuses = set(Incident.objects.values_list("status", flat=True))
        assert {
            Status.OPEN,
            Status.INVESTIGATING,
            Status.MONITORING,
            Status.RESOLVED,
            Status.CLOSED,
            Status.CANCELLED,
        } <= statuses
        assert Incident.objects.filter(status=Status.OPEN, severity=1).exists()
        assert Incident.objects.filter(status=Status.INVESTIGATING, severity=2).exists()

        closed = Incident.objects.get(status=Status.CLOSED)
        for name in ("summary", "root_cause", "resolution", "business_impact", "lessons_learned"):
            assert getattr(closed, name).strip(), name
        assert closed.role_assignments.count() == 4
        duplicate = Incident.objects.get(status=Status.CANCELLED)
        assert duplicate.duplicate_of is not None
        assert duplicate.duplicate_of.status == Status.OPEN

    def test_staff_contacts_and_services(self, loaded):
        User = get_user_model()
        for group in (
            "Incident Manager",
            "Technical Lead",
            "Communications Lead",
            "Business Liaison",
        ):
            assert User.objects.filter(groups__name=group, is_staff=True).count() == 2
        assert User.objects.filter(groups__name="Viewer").exists()
        for role in ResponseRole.objects.select_related("primary_contact", "backup_contact"):
            assert role.primary_contact.user is not None, role.key
            assert role.backup_contact.user is not None, role.key
            assert role.primary_contact.user.groups.filter(pk=role.group_id).exists()
        assert not EscalationContact.objects.filter(contact__name__startswith="[Name]").exists()
        kinds = set(Service.objects.values_list("kind", flat=True))
        assert {"customer_app", "production", "infrastructure", "third_party", "internal"} <= kinds

    def test_timelines_are_written_by_the_services(self, loaded):
        now = timezone.now()
        for incident in Incident.objects.all():
            entries = list(incident.timeline.order_by("occurred_at", "id"))
            assert entries[0].kind == Kind.CREATED, incident.number
            assert incident.detected_at < now - timedelta(minutes=1)
            # Stories replay in time: the log starts at detection and never runs backwards.
            assert entries[0].occurred_at == incident.detected_at
            times = [entry.occurred_at for entry in entries]
            assert times == sorted(times)
            assert incident.history.exists()
            if incident.status != Status.OPEN:
                assert any(entry.kind == Kind.STATUS for entry in entries), incident.number

        closed = Incident.objects.get(status=Status.CLOSED)
        kinds = list(closed.timeline.values_list("kind", flat=True))
        for kind in (Kind.ROLE, Kind.NOTE, Kind.DECISION, Kind.SEVERITY, Kind.UPDATE, Kind.STATUS):
            assert kind in kinds
        steps = [e.data.get("action") for e in closed.timeline.filter(kind=Kind.STATUS)]
        assert steps == ["acknowledge", "investigate", "mitigate", "monitor", "resolve", "close"]
        assert closed.detected_at < closed.acknowledged_at < closed.resolved_at < closed.closed_at
        assert closed.closed_at < now - timedelta(days=1)
        assert not closed.response_breached_at(now)
        assert not closed.resolution_breached_at(now)

    def test_integrations_of_every_kind_with_their_own_credentials(self, loaded):
        integrations = {i.name: i for i in Integration.objects.select_related("service")}
        assert {name: i.kind for name, i in integrations.items()} == {
            "Prometheus (production)": IntegrationKind.ALERTMANAGER,
            "Grafana Cloud": IntegrationKind.GRAFANA,
            "Datadog": IntegrationKind.DATADOG,
            "CloudWatch eu-west-1": IntegrationKind.CLOUDWATCH,
            "Nagios core": IntegrationKind.NAGIOS,
            "Splunk security searches": IntegrationKind.SPLUNK,
            "Nightly database backup": IntegrationKind.HEARTBEAT,
        }
        schemes = {name: i.effective_auth for name, i in integrations.items()}
        assert schemes["Datadog"] == "header"
        assert schemes["CloudWatch eu-west-1"] == "sns"
        assert schemes["Nagios core"] == "hmac"
        assert schemes["Splunk security searches"] == "url_key"
        keys = {i.key for i in integrations.values()}
        secrets = {i.secret for i in integrations.values()}
        assert len(keys) == len(secrets) == len(integrations)
        assert all(len(key) == 32 and secret for key, secret in zip(keys, secrets, strict=True))
        assert all(i.enabled for i in integrations.values())

        now = timezone.now()
        prometheus = integrations["Prometheus (production)"]
        assert prometheus.heartbeat_minutes is None
        backup = integrations["Nightly database backup"]
        assert backup.heartbeat_minutes == 25 * 60
        assert now - timedelta(minutes=5) < backup.last_signal_at <= now
        assert backup.heartbeat_due_at == backup.last_signal_at + timedelta(hours=25)

        rule = RoutingRule.objects.select_related("integration", "service").get()
        assert rule.integration == prometheus
        assert rule.match == {"team": "payments"}
        assert rule.service.slug == "checkout"

        window = MaintenanceWindow.objects.select_related("service").get()
        assert window.reason == "Database failover test"
        assert window.service.slug == "orders-db" and window.integration is None
        start, end = timezone.localtime(window.starts_at), timezone.localtime(window.ends_at)
        assert start.date() == timezone.localtime(prometheus.created_at).date() + timedelta(1)
        assert (start.time(), end.time()) == (time(2), time(3))

    def test_integration_admin_pages_show_the_snippet(self, loaded, client):
        client.force_login(get_user_model().objects.get(username=demo.SUPERUSER))
        listing = client.get("/admin/incidents/integration/")
        assert listing.status_code == 200
        for integration in Integration.objects.all():
            page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
            assert page.status_code == 200, integration.name
            text = page.content.decode()
            assert "Configuration snippet" in text
            assert f"/{integration.key}/" in text, integration.name

    def test_a_second_run_with_keep_existing_adds_no_integration(self, loaded, debug):
        first = snapshot()
        output = run(keep_existing=True, **LOAD)
        assert snapshot() == first
        assert Integration.objects.count() == len(demo_integrations.INTEGRATIONS)
        assert RoutingRule.objects.count() == MaintenanceWindow.objects.count() == 1
        assert "Prometheus (production)" in output and "(created)" not in output

    def test_the_heartbeat_sweep_opens_nothing_after_the_load(self, loaded):
        incidents = Incident.objects.count()
        assert heartbeat_sweep_task() == 0
        last = Integration.objects.get(name="Nightly database backup").last_signal_at
        with time_machine.travel(last + timedelta(hours=24, minutes=59), tick=False):
            assert heartbeat_sweep_task() == 0
        assert Incident.objects.count() == incidents
        # The heartbeat is live: the backup silent past its 25 hours opens one incident. Loaded
        # between 01:00 and 02:00, it falls due in the demo's planned window on the backup's
        # service (tomorrow 02:00-03:00), which silences it until the window's end.
        overdue = last + timedelta(hours=25, seconds=1)
        window = MaintenanceWindow.objects.filter(starts_at__lte=overdue, ends_at__gt=overdue)
        if window.exists():
            overdue = window.get().ends_at + timedelta(seconds=1)
        with time_machine.travel(overdue, tick=False):
            assert heartbeat_sweep_task() == 1
        assert Incident.objects.filter(title__startswith="No signal from Nightly").exists()


def test_without_time_machine_steps_happen_now(debug, monkeypatch):
    monkeypatch.setattr(demo, "time_machine", None)
    output = run(**LOAD)
    assert "time-machine is not installed" in output
    closed = Incident.objects.get(status=Status.CLOSED)
    assert closed.detected_at < timezone.now() - timedelta(days=5)
    assert closed.closed_at > timezone.now() - timedelta(minutes=5)
    assert Incident.objects.count() == len(demo_stories.STORIES)


# --- the guard: however the command is started (make demo and make run set DJANGO_DEBUG=1) -------


def _nothing_loaded(*, users: int = 1) -> bool:
    return (
        not Incident.objects.exists()
        and not Service.objects.filter(slug__in=[s["slug"] for s in demo.SERVICES]).exists()
        and not Contact.objects.filter(user__isnull=False).exists()
        and get_user_model().objects.count() == users
    )


@embedded_only
def test_a_fresh_embedded_database_loads_without_force(debug):
    output = run()
    assert Incident.objects.count() == len(demo_stories.STORIES)
    assert get_user_model().objects.get(username="admin").check_password(demo.DEMO_PASSWORD)
    assert f"Log in as {demo.SUPERUSER} / {demo.DEMO_PASSWORD}" in output


def test_a_real_admin_is_refused_even_in_debug_and_keeps_its_password(debug):
    User = get_user_model()
    User.objects.create_superuser("admin", "ops@vigil.example", "a-real-secret-9f3k")
    with pytest.raises(CommandError) as refused:
        run()
    message = str(refused.value)
    assert "admin" in message and "--force" in message
    admin = User.objects.get(username="admin")
    assert admin.check_password("a-real-secret-9f3k")
    assert not admin.check_password(demo.DEMO_PASSWORD)
    assert (admin.email, admin.first_name) == ("ops@vigil.example", "")
    assert _nothing_loaded()


def test_a_demo_named_user_without_a_usable_password_is_not_the_demos(debug):
    User = get_user_model()
    User.objects.create_user("maria", "maria@corp.example")  # e.g. signs in through SSO
    with pytest.raises(CommandError, match="maria"):
        run()
    assert not User.objects.get(username="maria").has_usable_password()
    assert _nothing_loaded()


def test_a_user_outside_the_demo_is_refused(debug):
    get_user_model().objects.create_user("alice", "alice@corp.example", "alices-own-pass-77")
    with pytest.raises(CommandError, match="alice"):
        run()
    assert _nothing_loaded()


def test_force_loads_over_a_real_admin(debug):
    User = get_user_model()
    User.objects.create_superuser("admin", "ops@vigil.example", "a-real-secret-9f3k")
    output = run(force=True)
    assert Incident.objects.count() == len(demo_stories.STORIES)
    assert User.objects.get(username="admin").check_password(demo.DEMO_PASSWORD)
    assert f"Log in as {demo.SUPERUSER} / {demo.DEMO_PASSWORD}" in output


@pytest.mark.postgres
def test_a_database_that_is_not_the_embedded_sqlite_is_refused(debug):
    with pytest.raises(CommandError, match="not the embedded SQLite"):
        run()
    assert _nothing_loaded(users=0)


# --- make run: --keep-existing --------------------------------------------------------------------


@embedded_only
def test_keep_existing_loads_a_fresh_embedded_database(debug):
    run(keep_existing=True)
    assert Incident.objects.count() == len(demo_stories.STORIES)


@embedded_only
def test_keep_existing_leaves_a_used_development_database_as_it_is(debug):
    """A developer who added a user in the demo's admin, or changed a demo password, can start
    `make run` again: nothing is loaded or reset, and it succeeds."""
    User = get_user_model()
    User.objects.create_superuser("admin", "ops@vigil.example", "a-real-secret-9f3k")
    output = run(keep_existing=True)
    assert "kept as it is" in output and "admin" in output
    assert User.objects.get(username="admin").check_password("a-real-secret-9f3k")
    assert _nothing_loaded()


@pytest.mark.postgres
def test_keep_existing_still_refuses_a_database_that_is_not_the_embedded_sqlite(debug):
    get_user_model().objects.create_user("alice", "alice@corp.example", "alices-own-pass-77")
    with pytest.raises(CommandError, match="not the embedded SQLite"):
        run(keep_existing=True)
    assert _nothing_loaded()


def test_keep_existing_still_refuses_production_mode(settings):
    settings.DEBUG = False
    get_user_model().objects.create_user("alice", "alice@corp.example", "alices-own-pass-77")
    with pytest.raises(CommandError, match="DJANGO_DEBUG off"):
        run(keep_existing=True)
    assert _nothing_loaded()
