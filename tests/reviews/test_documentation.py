"""The 48-hour documentation rule (§4.2 step 4): from resolution, the incident report (its fields
and lessons learned) is due within the policy's hours; the incident manager is reminded once at
the policy's point before, a miss is recorded once on the timeline, and the completion (met or
late) once; a reopen pauses the clock and the next resolution restarts it. The incident page
shows the completeness and the countdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from escalation.models import Notification
from incidents.models import Incident, ResponseRole, Source, TimelineEntry
from incidents.services import (
    incident_create,
    incident_roles_assign,
    incident_transition,
    incident_update,
)
from reviews.models import DocumentationClock, ReviewPolicy
from reviews.services.documentation import documentation_sweep
from reviews.tasks import documentation_sweep_task
from tests.events import followed

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

incident_transition = followed(incident_transition)
incident_update = followed(incident_update)
incident_roles_assign = followed(incident_roles_assign)

REPORT = {
    "root_cause": "A bad release.",
    "business_impact": "Checkout down 20 minutes.",
    "lessons_learned": "Canary every release.",
}


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def resolved(**report) -> Incident:
    incident = followed(incident_create)(
        actor=None,
        source=Source.SYSTEM,
        title="Checkout is down",
        severity=2,
        summary="Customers cannot check out.",
    )
    if report:
        incident = incident_update(incident=incident, actor=None, source=Source.SYSTEM, **report)
    for action in ("acknowledge", "investigate"):
        incident = incident_transition(
            incident=incident, action=action, actor=None, source=Source.SYSTEM
        )
    return incident_transition(
        incident=incident,
        action="resolve",
        actor=None,
        source=Source.SYSTEM,
        resolution="Rolled back the release.",
    )


def entries(incident: Incident, what: str) -> list[TimelineEntry]:
    return [
        e
        for e in TimelineEntry.objects.filter(incident=incident).order_by("pk")
        if (e.data or {}).get("documentation") == what
    ]


def reminders(incident: Incident):
    return Notification.objects.filter(
        incident=incident, idempotency_key__startswith=f"reviews-documentation:{incident.pk}:"
    )


def fill(incident: Incident, **fields) -> Incident:
    return incident_update(incident=incident, actor=None, source=Source.SYSTEM, **fields)


def test_resolution_starts_the_clock_due_after_the_policy_hours(clock):
    incident = resolved()

    documentation = DocumentationClock.objects.get(incident=incident)
    assert documentation.resolved_at == T0
    assert documentation.due_at == T0 + 48 * HOUR
    assert documentation.reminder_at == T0 + 36 * HOUR
    assert documentation.next_check_at == T0 + 36 * HOUR
    [started] = entries(incident, "started")
    assert "due by 4 Mar 2026, 10:00 UTC" in started.message
    assert set(started.data["missing"]) == {"root_cause", "business_impact", "lessons_learned"}


def test_the_policy_hours_are_taken_when_the_clock_starts(clock):
    ReviewPolicy.objects.update_or_create(
        pk=1, defaults={"documentation_hours": 24, "documentation_reminder_hours": 4}
    )
    incident = resolved()

    documentation = DocumentationClock.objects.get(incident=incident)
    assert documentation.due_at == T0 + 24 * HOUR
    assert documentation.reminder_at == T0 + 20 * HOUR


def test_the_incident_manager_is_reminded_once_before_the_due_time(clock, incident_manager):
    incident = resolved()
    incident_roles_assign(
        incident=incident,
        actor=None,
        source=Source.SYSTEM,
        assignments={ResponseRole.INCIDENT_MANAGER: incident_manager},
    )

    clock.move_to(T0 + 35 * HOUR)
    assert documentation_sweep() == []
    assert not reminders(incident).exists()

    clock.move_to(T0 + 36 * HOUR)
    [action] = documentation_sweep()
    assert action.action == "reminder"
    assert documentation_sweep() == []
    assert documentation_sweep_task() == 0
    clock.move_to(T0 + 40 * HOUR)
    assert documentation_sweep() == []

    [reminder] = reminders(incident)
    assert reminder.recipient == incident_manager.email
    assert reminder.channel == "email"
    assert "due in 12 h" in reminder.subject
    assert "Root cause, Business impact, Lessons learned" in reminder.body
    [entry] = entries(incident, "reminder")
    assert "Reminded the incident manager" in entry.message


def test_without_an_assigned_manager_the_roles_primary_contact_is_reminded(clock):
    role = ResponseRole.objects.select_related("primary_contact").get(
        key=ResponseRole.INCIDENT_MANAGER
    )
    assert role.primary_contact is not None and role.primary_contact.email
    incident = resolved()

    clock.move_to(T0 + 37 * HOUR)
    documentation_sweep()

    [reminder] = reminders(incident)
    assert reminder.recipient == role.primary_contact.email


def test_a_miss_is_recorded_once(clock):
    incident = resolved()
    clock.move_to(T0 + 36 * HOUR)
    documentation_sweep()

    clock.move_to(T0 + 48 * HOUR)
    assert [a.action for a in documentation_sweep()] == ["missed"]
    clock.move_to(T0 + 60 * HOUR)
    assert documentation_sweep() == []
    assert documentation_sweep_task() == 0

    [missed] = entries(incident, "missed")
    assert "Missed the 48 h documentation rule" in missed.message
    assert "Root cause, Business impact, Lessons learned" in missed.message
    assert DocumentationClock.objects.get(incident=incident).next_check_at is None
    assert reminders(incident).count() == 1


def test_a_sweep_running_late_past_the_due_time_records_the_miss_without_a_reminder(clock):
    incident = resolved()

    clock.move_to(T0 + 50 * HOUR)
    assert [a.action for a in documentation_sweep()] == ["missed"]
    assert not reminders(incident).exists()
    assert len(entries(incident, "missed")) == 1


def test_completing_the_report_in_time_is_recorded_met_and_stops_the_clock(clock):
    incident = resolved()
    clock.move_to(T0 + 5 * HOUR)
    incident = fill(incident, root_cause="A bad release.")
    assert entries(incident, "completed") == []

    clock.move_to(T0 + 6 * HOUR)
    fill(incident, business_impact="Checkout down.", lessons_learned="Canary every release.")

    [completed] = entries(incident, "completed")
    assert completed.data["late"] is False
    assert "6 h after resolution" in completed.message and "met" in completed.message
    documentation = DocumentationClock.objects.get(incident=incident)
    assert documentation.completed_at == T0 + 6 * HOUR
    assert documentation.next_check_at is None
    clock.move_to(T0 + 50 * HOUR)
    assert documentation_sweep() == []
    assert not reminders(incident).exists()
    assert entries(incident, "missed") == []


def test_completing_the_report_after_the_miss_is_recorded_late_once(clock):
    incident = resolved()
    clock.move_to(T0 + 49 * HOUR)
    documentation_sweep()

    clock.move_to(T0 + 52 * HOUR)
    incident = fill(incident, **REPORT)
    fill(incident, lessons_learned="Canary every release, and watch it.")

    [completed] = entries(incident, "completed")
    assert completed.data["late"] is True
    assert "4 h after it was due" in completed.message
    assert len(entries(incident, "missed")) == 1


def test_a_report_complete_at_resolution_is_met_at_once(clock):
    incident = resolved(**REPORT)

    [completed] = entries(incident, "completed")
    assert completed.data["late"] is False
    clock.move_to(T0 + 49 * HOUR)
    assert documentation_sweep() == []
    assert not reminders(incident).exists()


def test_closing_keeps_the_clock_running_until_the_lessons_are_learned(clock):
    incident = resolved()
    incident = fill(incident, root_cause="A bad release.", business_impact="Checkout down.")
    incident = incident_transition(
        incident=incident, action="close", actor=None, source=Source.SYSTEM
    )

    clock.move_to(T0 + 36 * HOUR)
    assert [a.action for a in documentation_sweep()] == ["reminder"]
    assert "Lessons learned" in reminders(incident).get().body

    clock.move_to(T0 + 40 * HOUR)
    incident_update(
        incident=incident,
        actor=None,
        source=Source.SYSTEM,
        correction_reason="The review's lessons.",
        lessons_learned="Canary every release.",
    )
    assert len(entries(incident, "completed")) == 1


def test_a_reopen_pauses_the_clock_and_the_next_resolution_restarts_it(clock):
    incident = resolved()
    clock.move_to(T0 + 36 * HOUR)
    documentation_sweep()
    assert reminders(incident).count() == 1

    clock.move_to(T0 + 40 * HOUR)
    incident = incident_transition(
        incident=incident,
        action="reopen",
        actor=None,
        source=Source.SYSTEM,
        reason="The fix did not hold.",
    )
    assert len(entries(incident, "paused")) == 1
    clock.move_to(T0 + 60 * HOUR)
    assert documentation_sweep() == []
    assert entries(incident, "missed") == []

    incident = incident_transition(
        incident=incident,
        action="resolve",
        actor=None,
        source=Source.SYSTEM,
        resolution="Rolled back again.",
    )
    documentation = DocumentationClock.objects.get(incident=incident)
    assert documentation.due_at == T0 + 108 * HOUR
    assert len(entries(incident, "restarted")) == 1

    clock.move_to(T0 + 96 * HOUR)
    assert [a.action for a in documentation_sweep()] == ["reminder"]
    assert reminders(incident).count() == 2
    clock.move_to(T0 + 108 * HOUR)
    assert [a.action for a in documentation_sweep()] == ["missed"]
    assert documentation_sweep() == []
    assert len(entries(incident, "missed")) == 1


def test_an_incident_never_resolved_has_no_clock(clock):
    incident = followed(incident_create)(
        actor=None, source=Source.SYSTEM, title="Checkout is down", severity=2
    )
    incident_transition(
        incident=incident, action="cancel", actor=None, source=Source.SYSTEM, reason="Dup."
    )
    assert not DocumentationClock.objects.exists()


# --- the incident page -------------------------------------------------------------------------


def panel(client, incident: Incident) -> str:
    html = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content
    html = html.decode()
    start = html.index('id="panel-documentation"')
    return html[start : html.index("</section>", start)]


def test_the_incident_page_shows_completeness_and_countdown(client, viewer, clock):
    incident = resolved()
    client.force_login(viewer)

    clock.move_to(T0 + 10 * HOUR)
    text = panel(client, incident)
    assert "Due 4 Mar 2026, 10:00 UTC: 38 h left." in text
    assert "Report 2 of 5 complete" in text
    assert "✗ Lessons learned" in text and "✓ Summary" in text

    clock.move_to(T0 + 50 * HOUR)
    documentation_sweep()
    assert 'data-documentation="overdue"' in panel(client, incident)

    fill(incident, **REPORT)
    text = panel(client, incident)
    assert 'data-documentation="late"' in text
    assert "Report 5 of 5 complete." in text


def test_the_panel_before_resolution_says_when_the_clock_starts(client, viewer, clock):
    incident = followed(incident_create)(
        actor=None, source=Source.SYSTEM, title="Checkout is down", severity=2
    )
    client.force_login(viewer)
    assert "Starts when the incident is resolved." in panel(client, incident)
