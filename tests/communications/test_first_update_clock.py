"""The 30-minute rule (§5.2): a customer-facing incident's first public update is due 30 minutes
after it is confirmed (acknowledged); the communications lead is reminded at 15 and 25 minutes
(the backup from the second reminder on), a miss is recorded once, and a publication stops it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings

from communications.models import (
    CommunicationPolicy,
    FirstUpdateClock,
    StatusUpdate,
    UpdateState,
    UpdateStatus,
)
from communications.services.clock import first_update_published
from communications.services.clock_sweep import first_update_sweep
from communications.tasks import first_update_sweep_task
from escalation.models import Notification
from incidents.models import Incident, Kind, ResponseRole, Source, TimelineEntry
from incidents.services import (
    incident_acknowledge,
    incident_create,
    incident_roles_assign,
    incident_transition,
    incident_update,
)
from tests.events import followed

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

incident_acknowledge = followed(incident_acknowledge)
incident_transition = followed(incident_transition)
incident_update = followed(incident_update)
incident_roles_assign = followed(incident_roles_assign)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def create(*, customer_facing: bool = True, severity: int = 3, **kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return followed(incident_create)(
        actor=None,
        source=Source.SYSTEM,
        severity=severity,
        customer_facing=customer_facing,
        **kwargs,
    )


def acknowledge(incident: Incident) -> Incident:
    return incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)


def reminders(incident: Incident):
    return Notification.objects.filter(
        incident=incident, idempotency_key__startswith=f"comms-first-update:{incident.pk}:"
    ).order_by("pk")


def keys(incident: Incident) -> list[str]:
    prefix = f"comms-first-update:{incident.pk}:"
    return [n.idempotency_key.removeprefix(prefix) for n in reminders(incident)]


def role_contacts():
    role = ResponseRole.objects.get(key=ResponseRole.COMMUNICATIONS_LEAD)
    return role.primary_contact, role.backup_contact


def entries(incident: Incident, point) -> list[TimelineEntry]:
    return [
        e
        for e in incident.timeline.filter(kind__in=[Kind.COMMUNICATION, Kind.NOTIFICATION])
        if e.data.get("first_update") == point or e.data.get("point") == point
    ]


def publish(incident: Incident, *, at: datetime) -> StatusUpdate:
    """A published update, as the publishing service leaves it (the service then calls
    ``first_update_published``; the tests that need that call make it themselves)."""
    return StatusUpdate.objects.create(
        incident=incident,
        public_title="Checkout errors",
        public_status=UpdateStatus.INVESTIGATING,
        body="We are looking into it.",
        state=UpdateState.PUBLISHED,
        published_at=at,
    )


# --- starting -------------------------------------------------------------------------------


def test_acknowledging_a_customer_facing_incident_starts_the_clock(clock):
    incident = create()
    assert not FirstUpdateClock.objects.exists()
    clock.shift(2 * MIN)

    acknowledge(incident)

    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert fuc.confirmed_at == T0 + 2 * MIN
    assert fuc.due_at == T0 + 32 * MIN
    assert fuc.reminder_minutes == [15, 25]
    assert fuc.next_check_at == T0 + 17 * MIN
    started = entries(incident, "started")
    assert len(started) == 1
    assert "due by 10:32 UTC (30 minutes after confirmation)" in started[0].message


def test_an_internal_incident_gets_no_clock(clock):
    incident = create(customer_facing=False)

    acknowledge(incident)
    clock.shift(40 * MIN)
    first_update_sweep()

    assert not FirstUpdateClock.objects.exists()
    assert not reminders(incident).exists()


def test_an_unacknowledged_incident_gets_no_clock_yet(clock):
    create()
    clock.shift(40 * MIN)

    assert first_update_sweep() == []
    assert not FirstUpdateClock.objects.exists()


def test_taking_action_from_open_acknowledges_and_starts_the_clock(clock):
    incident = create()
    clock.shift(3 * MIN)

    incident_transition(incident=incident, action="investigate", actor=None, source="system")

    assert FirstUpdateClock.objects.get(incident=incident).confirmed_at == T0 + 3 * MIN


def test_a_second_acknowledging_event_does_not_start_a_second_clock(clock):
    incident = create()
    acknowledge(incident)
    clock.shift(5 * MIN)

    incident_transition(incident=incident, action="investigate", actor=None, source="system")

    assert FirstUpdateClock.objects.get(incident=incident).confirmed_at == T0
    assert len(entries(incident, "started")) == 1


def test_marked_customer_facing_after_acknowledgement_the_clock_counts_from_the_marking(clock):
    incident = acknowledge(create(customer_facing=False))
    clock.shift(10 * MIN)

    incident_update(incident=incident, actor=None, source=Source.SYSTEM, customer_facing=True)

    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert fuc.confirmed_at == T0 + 10 * MIN
    assert fuc.due_at == T0 + 40 * MIN


def test_made_internal_the_clock_stops_and_marked_again_it_resumes(clock):
    incident = acknowledge(create())
    clock.shift(5 * MIN)
    incident_update(incident=incident, actor=None, source=Source.SYSTEM, customer_facing=False)

    assert FirstUpdateClock.objects.get(incident=incident).next_check_at is None
    clock.shift(30 * MIN)
    assert first_update_sweep() == []
    assert not reminders(incident).exists()

    incident_update(incident=incident, actor=None, source=Source.SYSTEM, customer_facing=True)

    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert fuc.confirmed_at == T0  # the clock that ran keeps its times
    assert fuc.next_check_at == T0 + 15 * MIN
    assert [len(entries(incident, p)) for p in ("stopped", "resumed")] == [1, 1]
    assert "due by 10:30" in entries(incident, "resumed")[0].message
    assert [a.action for a in first_update_sweep()] == ["missed"]


# --- reminders and the miss -----------------------------------------------------------------


def test_reminders_at_15_and_25_once_each_and_the_miss_once_at_30(clock):
    incident = acknowledge(create())
    primary, backup = role_contacts()
    p, b = f"c{primary.pk}", f"c{backup.pk}"

    clock.shift(14 * MIN + 59 * timedelta(seconds=1))
    assert first_update_sweep() == []

    clock.move_to(T0 + 15 * MIN)
    done = first_update_sweep()
    assert [(a.action, a.minutes) for a in done] == [("reminder", 15)]
    assert first_update_sweep() == []
    # Sev 3 channels are email and Slack; the seeded contacts have no Slack handle.
    assert keys(incident) == [f"15:{p}:email"]
    assert reminders(incident).get().recipient == primary.email
    assert "due in 15 min" in reminders(incident).get().subject

    clock.move_to(T0 + 25 * MIN)
    assert [(a.action, a.minutes) for a in first_update_sweep()] == [("reminder", 25)]
    assert first_update_sweep() == []
    assert keys(incident)[1:] == [f"25:{p}:email", f"25:{b}:email"]

    clock.move_to(T0 + 30 * MIN)
    assert [a.action for a in first_update_sweep()] == ["missed"]
    assert first_update_sweep() == []
    clock.move_to(T0 + 2 * 60 * MIN)
    assert first_update_sweep() == []

    assert keys(incident)[3:] == [f"overdue:{p}:email", f"overdue:{b}:email"]
    assert "overdue" in reminders(incident).last().subject
    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert fuc.reminders_sent == [15, 25]
    assert fuc.missed_at == T0 + 30 * MIN
    assert fuc.next_check_at is None
    missed = entries(incident, "missed")
    assert len(missed) == 1
    assert missed[0].message.startswith("Missed the 30 min rule")
    assert [len(entries(incident, point)) for point in (15, 25, "overdue")] == [1, 1, 1]
    reminder_15 = entries(incident, 15)[0]
    assert reminder_15.kind == Kind.NOTIFICATION
    assert f"{primary.name} by Email" in reminder_15.message
    assert "Slack for" in reminder_15.message  # who could not be reached, said


def test_the_assigned_communications_lead_is_reminded_instead_of_the_primary(
    clock, communications_lead
):
    incident = acknowledge(create())
    incident_roles_assign(
        incident=incident,
        actor=None,
        source=Source.SYSTEM,
        assignments={ResponseRole.COMMUNICATIONS_LEAD: communications_lead},
    )
    clock.move_to(T0 + 15 * MIN)

    first_update_sweep()

    assert keys(incident) == [f"15:u{communications_lead.pk}:email"]
    assert reminders(incident).get().recipient == communications_lead.email


def test_a_late_sweep_sends_only_the_latest_reminder_due(clock):
    incident = acknowledge(create())
    clock.move_to(T0 + 27 * MIN)

    done = first_update_sweep()

    assert [(a.action, a.minutes) for a in done] == [("reminder", 25)]
    assert {k.split(":")[0] for k in keys(incident)} == {"25"}
    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert fuc.reminders_sent == [15, 25]
    assert fuc.next_check_at == T0 + 30 * MIN


def test_a_sweep_after_the_due_time_records_only_the_miss(clock):
    incident = acknowledge(create())
    clock.move_to(T0 + 45 * MIN)

    assert [a.action for a in first_update_sweep()] == ["missed"]

    assert {k.split(":")[0] for k in keys(incident)} == {"overdue"}
    assert FirstUpdateClock.objects.get(incident=incident).missed_at == T0 + 45 * MIN


def test_the_beat_task_runs_the_sweep_every_15_seconds(clock):
    incident = acknowledge(create())
    clock.move_to(T0 + 15 * MIN)

    assert first_update_sweep_task.name == "communications.first_update_sweep"
    assert first_update_sweep_task.apply().get() == 1
    assert keys(incident)

    entry = settings.CELERY_BEAT_SCHEDULE["communications-first-update-sweep"]
    assert entry["task"] == "communications.first_update_sweep"
    assert entry["schedule"] == 15.0


# --- met ------------------------------------------------------------------------------------


def test_a_publication_before_15_minutes_meets_the_rule_and_nothing_is_sent(clock):
    incident = acknowledge(create())
    clock.move_to(T0 + 8 * MIN)
    publish(incident, at=T0 + 8 * MIN)

    first_update_published(incident=incident, at=T0 + 8 * MIN)

    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert (fuc.met_at, fuc.next_check_at) == (T0 + 8 * MIN, None)
    for minutes in (15, 25, 30, 60):
        clock.move_to(T0 + minutes * MIN)
        assert first_update_sweep() == []
    assert not reminders(incident).exists()
    assert not entries(incident, "missed")
    met = entries(incident, "met")
    assert len(met) == 1
    assert "8 min after confirmation: the 30 min rule is met" in met[0].message
    # Only the first publication counts.
    first_update_published(incident=incident, at=T0 + 60 * MIN)
    assert FirstUpdateClock.objects.get(incident=incident).met_at == T0 + 8 * MIN
    assert len(entries(incident, "met")) == 1


def test_the_sweep_finds_a_published_update_by_itself(clock):
    incident = acknowledge(create())
    publish(incident, at=T0 + 9 * MIN)
    clock.move_to(T0 + 15 * MIN)

    assert [a.action for a in first_update_sweep()] == ["met"]

    assert not reminders(incident).exists()
    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert (fuc.met_at, fuc.next_check_at) == (T0 + 9 * MIN, None)


def test_a_draft_does_not_meet_the_rule(clock):
    incident = acknowledge(create())
    StatusUpdate.objects.create(
        incident=incident,
        public_title="Checkout errors",
        public_status=UpdateStatus.INVESTIGATING,
        body="Draft.",
        state=UpdateState.DRAFT,
    )
    clock.move_to(T0 + 15 * MIN)

    assert [a.action for a in first_update_sweep()] == ["reminder"]


def test_a_publication_after_the_miss_is_recorded_late(clock):
    incident = acknowledge(create())
    clock.move_to(T0 + 30 * MIN)
    first_update_sweep()
    clock.move_to(T0 + 41 * MIN)
    publish(incident, at=T0 + 41 * MIN)

    first_update_published(incident=incident, at=T0 + 41 * MIN)

    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert fuc.met_at == T0 + 41 * MIN
    assert "41 min after confirmation (11 min late)" in entries(incident, "met")[0].message


def test_marked_customer_facing_after_a_publication_the_clock_starts_met(clock):
    incident = acknowledge(create(customer_facing=False))
    publish(incident, at=T0 + 4 * MIN)
    clock.move_to(T0 + 6 * MIN)

    incident_update(incident=incident, actor=None, source=Source.SYSTEM, customer_facing=True)

    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert (fuc.met_at, fuc.next_check_at) == (T0 + 4 * MIN, None)


# --- stopping and the policy ----------------------------------------------------------------


def test_a_cancelled_incident_is_not_reminded(clock):
    incident = acknowledge(create())
    clock.move_to(T0 + 5 * MIN)

    incident_transition(
        incident=incident, action="cancel", actor=None, source="system", reason="False alarm."
    )
    clock.move_to(T0 + 31 * MIN)

    assert first_update_sweep() == []
    assert not reminders(incident).exists()
    assert FirstUpdateClock.objects.get(incident=incident).next_check_at is None
    assert len(entries(incident, "stopped")) == 1


def test_a_policy_edit_applies_to_clocks_started_after_it(clock):
    running = acknowledge(create())
    policy = CommunicationPolicy.objects.get(pk=1)
    policy.first_update_minutes = 20
    policy.reminder_minutes = [5, 25]  # 25 is past the due time: the miss covers it
    policy.save()
    clock.move_to(T0 + 1 * MIN)
    edited = acknowledge(create())

    fuc = FirstUpdateClock.objects.get(incident=edited)
    assert (fuc.due_at, fuc.reminder_minutes) == (T0 + 21 * MIN, [5])
    assert FirstUpdateClock.objects.get(incident=running).due_at == T0 + 30 * MIN

    clock.move_to(T0 + 6 * MIN)
    assert [(a.incident, a.action, a.minutes) for a in first_update_sweep()] == [
        (edited.number, "reminder", 5)
    ]
    clock.move_to(T0 + 21 * MIN)
    assert [(a.incident, a.action) for a in first_update_sweep()] == [
        (running.number, "reminder"),
        (edited.number, "missed"),
    ]
    assert "the 20 min rule" in entries(edited, "missed")[0].message


def test_a_clock_that_fails_is_left_due_and_the_others_go_on(clock, monkeypatch):
    broken, fine = acknowledge(create()), acknowledge(create())
    clock.move_to(T0 + 15 * MIN)
    import communications.services.clock_sweep as service

    original = service._remind

    def remind(*, incident, **kwargs):
        if incident.pk == broken.pk:
            raise RuntimeError("template missing")
        return original(incident=incident, **kwargs)

    monkeypatch.setattr(service, "_remind", remind)

    assert [a.incident for a in first_update_sweep()] == [fine.number]
    assert FirstUpdateClock.objects.get(incident=broken).next_check_at == T0 + 15 * MIN
    assert not reminders(broken).exists()


def test_handlers_running_late_decide_as_they_would_have_on_time(clock):
    from incidents.services import incident_acknowledge as acknowledge_unfollowed
    from incidents.services import incident_update as update_unfollowed
    from tests.events import follow_events

    incident = create(customer_facing=False)
    acknowledge_unfollowed(incident=incident, actor=None, source=Source.SYSTEM)
    clock.shift(10 * MIN)
    update_unfollowed(incident=incident, actor=None, source=Source.SYSTEM, customer_facing=True)
    clock.shift(20 * MIN)  # the workers were down meanwhile

    follow_events()

    fuc = FirstUpdateClock.objects.get(incident=incident)
    assert (fuc.confirmed_at, fuc.due_at) == (T0 + 10 * MIN, T0 + 40 * MIN)
    assert len(entries(incident, "started")) == 1
