"""The escalation matrix (§5.1): each step exactly once per incident, counted from detection,
caught up once after downtime, following severity changes, stopped by resolution, and immune
to policy edits made while an incident runs."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command

from escalation.models import EscalationEvent, EscalationStep, IncidentEscalation
from escalation.services import SWEEP_HEARTBEAT_KEY, escalation_sweep
from incidents.models import EscalationContact, Incident, Kind, SeverityLevel, Source
from incidents.services import (
    incident_acknowledge,
    incident_change_severity,
    incident_create,
    incident_transition,
    incident_update,
)
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import CHANNELS, T0
from tests.events import followed

reachable_policy = escalation_fixtures.reachable_policy

pytestmark = pytest.mark.django_db

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# §5.1 escalation matrix: (time since detection, level) per severity.
MATRIX = {
    1: [(30 * MIN, "IT Manager"), (HOUR, "CTO"), (2 * HOUR, "CEO"), (4 * HOUR, "Board")],
    2: [(30 * MIN, "IT Manager"), (HOUR, "IT Manager"), (2 * HOUR, "CTO"), (4 * HOUR, "CTO")],
    3: [(HOUR, "IT Manager"), (4 * HOUR, "CTO")],
    4: [],
}
LEVEL_KEYS = {"IT Manager": "it_manager", "CTO": "cto", "CEO": "ceo", "Board": "board"}


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def create(severity: int, **kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return incident_create(actor=None, source=Source.SYSTEM, severity=severity, **kwargs)


# Escalation follows the incidents' events after each action commits.
create = followed(create)
incident_acknowledge = followed(incident_acknowledge)
incident_change_severity = followed(incident_change_severity)
incident_transition = followed(incident_transition)
incident_update = followed(incident_update)


def steps(incident: Incident) -> list[tuple[timedelta, str]]:
    return [
        (e.elapsed, e.target)
        for e in EscalationEvent.objects.filter(incident=incident)
        .exclude(step="ack-timeout")
        .order_by("due_at")
    ]


def step_pages(incident: Incident):
    return incident.notifications.filter(idempotency_key__startswith=f"escalation:{incident.pk}:")


@pytest.mark.parametrize("severity", [1, 2, 3, 4])
def test_each_step_fires_once_at_its_time(reachable_policy, clock, severity):
    incident = create(severity)
    incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)
    expected: list[tuple[timedelta, str]] = []

    for elapsed, level in MATRIX[severity]:
        clock.move_to(T0 + elapsed - timedelta(seconds=1))
        assert escalation_sweep() == []
        clock.move_to(T0 + elapsed)
        fired = escalation_sweep()
        assert [(f.target, f.caught_up) for f in fired] == [(level, False)]
        expected.append((elapsed, level))
        assert steps(incident) == expected
        # Sweeping again, at once and a little later, repeats nothing.
        assert escalation_sweep() == []
        clock.shift(timedelta(seconds=29))
        assert escalation_sweep() == []

    clock.move_to(T0 + timedelta(hours=12))
    assert escalation_sweep() == []
    assert steps(incident) == expected
    contact = {level: reachable_policy.level[LEVEL_KEYS[level]] for _, level in expected}
    assert step_pages(incident).count() == len(expected) * len(CHANNELS[severity])
    for event in EscalationEvent.objects.filter(incident=incident):
        pages = step_pages(incident).filter(idempotency_key__contains=f":{event.step}:")
        assert {n.contact for n in pages} == {contact[event.target]}
        assert set(pages.values_list("channel", flat=True)) == set(CHANNELS[severity])
    assert IncidentEscalation.objects.get(incident=incident).next_due_at is None


def test_each_step_is_written_on_the_timeline(reachable_policy, clock):
    incident = create(1)
    clock.move_to(T0 + HOUR)
    escalation_sweep()

    messages = list(
        incident.timeline.filter(kind=Kind.ESCALATION)
        .exclude(data__step="ack-timeout")
        .values_list("message", flat=True)
    )
    cto = reachable_policy.level["cto"]
    assert messages == [
        "Escalated to IT Manager (Sev 1, 30 min elapsed). Sent late: it was due 2 Mar 2026, "
        f"09:30 UTC. Notified IT Manager {reachable_policy.level['it_manager'].name} by Phone "
        "call, Slack, Email.",
        f"Escalated to CTO (Sev 1, 1 h elapsed). Notified CTO {cto.name} by Phone call, Slack, "
        "Email.",
    ]


def test_step_messages_name_the_level_and_the_elapsed_time(reachable_policy, clock):
    incident = create(2)
    clock.move_to(T0 + 30 * MIN)
    escalation_sweep()

    email = step_pages(incident).get(channel="email")
    assert email.recipient == reachable_policy.level["it_manager"].email
    assert email.subject == (
        f"[Sev 2] Escalation to IT Manager: {incident.number} Checkout is down (30 min unresolved)"
    )
    assert "still unresolved 30 min after detection" in email.body
    assert "/ack/" in email.body  # not acknowledged yet
    assert email.reason == "Escalated to IT Manager (Sev 2, 30 min elapsed)"


# --- downtime ----------------------------------------------------------------------------------


def test_a_five_hour_outage_is_caught_up_with_one_message_per_step(reachable_policy, clock):
    incident = create(1)

    clock.move_to(T0 + 5 * HOUR)  # no sweep ran meanwhile
    fired = escalation_sweep()

    assert [(f.step, f.target) for f in fired] == [
        ("ack-timeout", "Backups of Incident Manager and Technical Lead"),
        ("sev1-0:30:00", "IT Manager"),
        ("sev1-1:00:00", "CTO"),
        ("sev1-2:00:00", "CEO"),
        ("sev1-4:00:00", "Board"),
    ]
    assert all(f.caught_up for f in fired)
    events = EscalationEvent.objects.filter(incident=incident)
    assert events.count() == 5
    assert all(e.caught_up and e.fired_at == T0 + 5 * HOUR for e in events)
    assert [e.due_at - T0 for e in events.order_by("due_at")] == [
        15 * MIN,
        30 * MIN,
        HOUR,
        2 * HOUR,
        4 * HOUR,
    ]
    # One message per step and channel: 4 levels × 3 channels, no duplicates.
    assert step_pages(incident).count() == 4 * 3
    assert step_pages(incident).values("idempotency_key").distinct().count() == 12
    assert all("Sent late" in e.message for e in incident.timeline.filter(kind=Kind.ESCALATION))

    clock.shift(30 * MIN)
    assert escalation_sweep() == []
    assert step_pages(incident).count() == 12


def test_an_incident_logged_late_escalates_on_the_next_sweep(reachable_policy, clock):
    # What the demo data relies on: a Sev 1 detected 45 minutes before it was logged.
    incident = create(1, detected_at=T0 - 45 * MIN)

    fired = escalation_sweep()

    assert [f.step for f in fired] == ["ack-timeout", "sev1-0:30:00"]
    assert IncidentEscalation.objects.get(incident=incident).next_due_at == T0 + 15 * MIN
    clock.shift(15 * MIN)
    assert [f.target for f in escalation_sweep()] == ["CTO"]


# --- severity changes --------------------------------------------------------------------------


def test_a_raise_applies_the_new_row_and_catches_up_its_past_steps(reachable_policy, clock):
    incident = create(3)
    clock.move_to(T0 + 70 * MIN)
    assert [f.target for f in escalation_sweep()] == ["IT Manager"]  # sev3 at 1 h

    incident_change_severity(incident=incident, severity=1, actor=None, source=Source.SYSTEM)

    esc = IncidentEscalation.objects.get(incident=incident)
    assert esc.next_due_at == T0 + 30 * MIN  # the Sev 1 row's past steps are owed
    fired = escalation_sweep()
    assert [(f.step, f.caught_up) for f in fired] == [
        ("ack-timeout", True),
        ("sev1-0:30:00", True),
        ("sev1-1:00:00", True),
    ]
    assert esc.__class__.objects.get(pk=esc.pk).next_due_at == T0 + 2 * HOUR
    clock.move_to(T0 + 4 * HOUR)
    assert [f.step for f in escalation_sweep()] == ["sev1-2:00:00", "sev1-4:00:00"]
    # The old row's 4 h step (CTO) no longer applies.
    assert not EscalationEvent.objects.filter(incident=incident, step="sev3-4:00:00").exists()


def test_a_drop_does_not_fire_the_new_rows_past_steps(reachable_policy, clock):
    incident = create(2)
    incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)
    clock.move_to(T0 + 90 * MIN)
    assert [f.step for f in escalation_sweep()] == ["sev2-0:30:00", "sev2-1:00:00"]

    incident_change_severity(incident=incident, severity=3, actor=None, source=Source.SYSTEM)

    esc = IncidentEscalation.objects.get(incident=incident)
    assert esc.severity_from == T0 + 90 * MIN
    assert esc.next_due_at == T0 + 4 * HOUR  # sev3's 1 h step lies before the drop
    clock.move_to(T0 + 3 * HOUR)
    assert escalation_sweep() == []  # nor sev2's 2 h step: the Sev 2 row no longer applies
    clock.move_to(T0 + 4 * HOUR)
    assert [f.step for f in escalation_sweep()] == ["sev3-4:00:00"]
    assert [s for _, s in steps(incident)] == ["IT Manager", "IT Manager", "CTO"]


def test_a_drop_to_sev4_ends_the_matrix(reachable_policy, clock):
    incident = create(2)
    incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)
    incident_change_severity(incident=incident, severity=4, actor=None, source=Source.SYSTEM)
    assert IncidentEscalation.objects.get(incident=incident).next_due_at is None
    clock.move_to(T0 + 5 * HOUR)
    assert escalation_sweep() == []


# --- stopping and restarting -------------------------------------------------------------------


@pytest.mark.parametrize("action", ["resolve", "cancel"])
def test_resolution_or_cancellation_stops_escalation(reachable_policy, clock, action):
    incident = create(1)
    clock.move_to(T0 + 45 * MIN)
    escalation_sweep()
    assert len(steps(incident)) == 1
    params = {"resolution": "Rolled back."} if action == "resolve" else {"reason": "Duplicate."}

    incident_transition(
        incident=incident, action=action, actor=None, source=Source.SYSTEM, **params
    )

    esc = IncidentEscalation.objects.get(incident=incident)
    assert esc.stopped_at == T0 + 45 * MIN
    assert esc.stop_reason in ("Incident resolved.", "Incident cancelled.")
    assert esc.next_due_at is None and esc.ack_due_at is None
    before = incident.notifications.count()
    clock.move_to(T0 + 6 * HOUR)
    assert escalation_sweep() == []
    assert len(steps(incident)) == 1
    assert incident.notifications.count() == before


def test_reopening_restarts_from_that_moment(reachable_policy, clock):
    incident = create(1)
    clock.move_to(T0 + 45 * MIN)
    escalation_sweep()
    incident = incident_transition(
        incident=incident, action="resolve", actor=None, source=Source.SYSTEM, resolution="Fixed."
    )
    clock.move_to(T0 + 150 * MIN)  # the 1 h and 2 h steps fall due while resolved

    incident_transition(incident=incident, action="reopen", actor=None, source=Source.SYSTEM)

    esc = IncidentEscalation.objects.get(incident=incident)
    assert esc.stopped_at is None and esc.stop_reason == ""
    assert esc.next_due_at == T0 + 4 * HOUR
    assert escalation_sweep() == []
    clock.move_to(T0 + 4 * HOUR)
    assert [f.target for f in escalation_sweep()] == ["Board"]
    assert [s for _, s in steps(incident)] == ["IT Manager", "Board"]


# --- the policy snapshot -----------------------------------------------------------------------


def test_editing_the_policy_mid_incident_does_not_change_a_running_escalation(
    reachable_policy, clock
):
    incident = create(1)
    original_cto_email = reachable_policy.level["cto"].email

    # Mid-incident: the CTO's address changes, the 1 h step now names the CEO, a new 45 min
    # step appears, and Sev 1 notifies by email only.
    cto = reachable_policy.level["cto"]
    cto.email = "new-cto@example.com"
    cto.save()
    EscalationStep.objects.filter(severity_id=1, elapsed=HOUR).update(
        target=EscalationContact.objects.get(key="ceo")
    )
    EscalationStep.objects.create(
        severity_id=1, elapsed=45 * MIN, target=EscalationContact.objects.get(key="board")
    )
    sev1 = SeverityLevel.objects.get(level=1)
    sev1.notification_channels = ["email"]
    sev1.save()

    clock.move_to(T0 + HOUR)
    escalation_sweep()

    assert [s for _, s in steps(incident)] == ["IT Manager", "CTO"]
    cto_pages = step_pages(incident).filter(idempotency_key__contains=":sev1-1:00:00:")
    assert set(cto_pages.values_list("channel", flat=True)) == {"phone", "slack", "email"}
    assert cto_pages.get(channel="email").recipient == original_cto_email

    # A new incident takes the new policy.
    newer = create(1)
    clock.move_to(T0 + 2 * HOUR)
    escalation_sweep()
    assert [s for _, s in steps(newer)] == ["IT Manager", "Board", "CEO"]
    assert set(step_pages(newer).values_list("channel", flat=True)) == {"email"}


# --- the sweep itself --------------------------------------------------------------------------


def test_the_sweep_leaves_its_heartbeat(clock):
    cache.delete(SWEEP_HEARTBEAT_KEY)
    escalation_sweep()
    assert cache.get(SWEEP_HEARTBEAT_KEY) == T0.isoformat()


def test_the_sweep_works_in_batches_without_skipping_anything(reachable_policy, clock):
    incidents = [create(2) for _ in range(7)]
    clock.move_to(T0 + 30 * MIN)

    fired = escalation_sweep(batch=3)

    assert len([f for f in fired if f.step == "sev2-0:30:00"]) == 7
    assert all(len(steps(i)) == 1 for i in incidents)


def test_escalate_command_runs_one_sweep_and_prints_what_fired(reachable_policy, clock):
    incident = create(1)
    out = StringIO()

    call_command("escalate", "--now", (T0 + HOUR).isoformat(), stdout=out)

    text = out.getvalue()
    assert "1 escalation(s) due, 3 step(s) fired." in text
    assert f"{incident.number}: sev1-1:00:00 → CTO, Sev 1" in text
    assert "(caught up)" in text
    out = StringIO()
    call_command("escalate", "--now", (T0 + HOUR).isoformat(), stdout=out)
    assert "0 escalation(s) due, 0 step(s) fired." in out.getvalue()


def test_escalate_command_refuses_a_bad_time(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not an ISO 8601"):
        call_command("escalate", "--now", "tomorrow-ish")


def test_a_sweep_out_of_time_leaves_the_rest_for_the_next_one(reachable_policy, clock):
    incident = create(1)
    clock.move_to(T0 + HOUR)
    cache.delete(SWEEP_HEARTBEAT_KEY)

    assert escalation_sweep(time_budget=-1) == []
    assert cache.get(SWEEP_HEARTBEAT_KEY) == (T0 + HOUR).isoformat()  # alive, just behind

    assert [f.step for f in escalation_sweep()] == ["ack-timeout", "sev1-0:30:00", "sev1-1:00:00"]
    assert len(steps(incident)) == 2


def test_the_beat_runs_the_sweep_task_every_30_seconds(settings, reachable_policy, clock):
    from config.celery import app
    from escalation.tasks import escalation_sweep_task

    entry = settings.CELERY_BEAT_SCHEDULE["escalation-sweep"]
    assert entry["task"] == "escalation.sweep" == escalation_sweep_task.name
    assert entry["schedule"] == 30.0
    assert "escalation.sweep" in app.tasks

    create(2)
    clock.move_to(T0 + 30 * MIN)
    assert escalation_sweep_task.apply().get() == 1
    assert escalation_sweep_task.apply().get() == 0


def test_the_sweeps_queries_follow_what_is_due_not_what_is_open(reachable_policy, clock):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def sweep_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            escalation_sweep()
        return len(queries)

    counts = []
    for quiet in (2, 12):
        for _ in range(quiet):
            incident_acknowledge(incident=create(3), actor=None, source=Source.SYSTEM)
        due = create(2)
        clock.shift(30 * MIN)  # the due incident owes its 30 min step; the others owe nothing
        counts.append(sweep_queries())
        assert len(steps(due)) == 1
        clock.shift(5 * HOUR)
        escalation_sweep()  # fire everything left, so the next round starts quiet
        clock.shift(MIN)
    assert counts[0] == counts[1]


def test_a_corrected_detection_time_moves_the_schedule(reachable_policy, clock):
    incident = create(1)
    incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)
    clock.move_to(T0 + 10 * MIN)
    assert escalation_sweep() == []

    # Monitoring saw it first 40 minutes ago: the 30-minute step is already due.
    incident_update(
        incident=Incident.objects.get(pk=incident.pk),
        actor=None,
        source=Source.SYSTEM,
        detected_at=T0 - 30 * MIN,
    )
    escalation = IncidentEscalation.objects.get(incident=incident)
    assert escalation.next_due_at == T0

    fired = escalation_sweep()
    assert [f.target for f in fired] == ["IT Manager"]
    assert steps(incident) == [(30 * MIN, "IT Manager")]
    assert escalation_sweep() == []
    assert IncidentEscalation.objects.get(incident=incident).next_due_at == T0 + 30 * MIN


def test_a_later_detection_time_does_not_fire_a_step_early(reachable_policy, clock):
    incident = create(1, detected_at=T0 - 20 * MIN)
    incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)

    incident_update(
        incident=Incident.objects.get(pk=incident.pk),
        actor=None,
        source=Source.SYSTEM,
        detected_at=T0 - 5 * MIN,
    )
    clock.move_to(T0 + 15 * MIN)
    assert escalation_sweep() == []
    clock.move_to(T0 + 25 * MIN)
    assert [f.target for f in escalation_sweep()] == ["IT Manager"]
