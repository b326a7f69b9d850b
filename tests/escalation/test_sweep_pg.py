"""The escalation sweep under concurrency, on PostgreSQL: two sweeps started at the same moment
(two beats, or a beat and an operator's ``escalate``) send nothing twice; a row someone else
holds is skipped, not waited for; a sweep racing a resolution neither deadlocks nor escalates a
resolved incident; and the due query is answered from the partial indexes."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction

from escalation.models import EscalationEvent, IncidentEscalation, Notification
from escalation.services import escalation_sweep
from escalation.services.timers import escalation_due
from incidents.models import Incident, Kind, Source, TimelineEntry
from incidents.services import incident_create, incident_transition
from tests.escalation import escalation_fixtures
from tests.events import followed
from tests.threads import in_threads

reachable_policy = escalation_fixtures.reachable_policy

# Transactional tests empty the tables after each test; serialized_rollback restores the policy
# the data migrations seeded (roles, groups, the matrix).
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def create(severity: int = 1, **kwargs: Any) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return incident_create(actor=None, source=Source.SYSTEM, severity=severity, **kwargs)


# Escalation follows each action's events once it commits (here, in the acting thread: a
# resolution's escalation stop races the sweep).
create = followed(create)
incident_transition = followed(incident_transition)


def test_two_sweeps_at_the_same_moment_send_nothing_twice(reachable_policy):
    incidents = [create(1) for _ in range(25)]
    start = min(i.detected_at for i in incidents)
    initial = Notification.objects.count()
    now = start + timedelta(hours=5)

    first, second = in_threads(
        lambda: escalation_sweep(now=now, batch=7), lambda: escalation_sweep(now=now, batch=7)
    )

    fired = Counter((f.incident, f.step) for f in first + second)
    assert len(fired) == 25 * 5  # ack timeout + 4 matrix steps per incident
    assert set(fired.values()) == {1}
    assert EscalationEvent.objects.count() == 25 * 5
    # Per incident: 4 levels × 3 channels, and 2 backups × 3 channels.
    assert Notification.objects.count() - initial == 25 * (12 + 6)
    assert TimelineEntry.objects.filter(kind=Kind.ESCALATION).count() == 25 * 5
    assert set(IncidentEscalation.objects.values_list("next_due_at", "ack_due_at").distinct()) == {
        (None, None)
    }
    assert escalation_sweep(now=now) == []


def test_many_sweeps_racing_on_one_incident_fire_each_step_once(reachable_policy):
    incident = create(2)
    now = incident.detected_at + timedelta(hours=4, minutes=1)

    results = in_threads(*[lambda: escalation_sweep(now=now) for _ in range(6)])

    steps = [f.step for result in results for f in result]
    assert sorted(steps) == sorted(
        ["ack-timeout", "sev2-0:30:00", "sev2-1:00:00", "sev2-2:00:00", "sev2-4:00:00"]
    )
    assert EscalationEvent.objects.filter(incident=incident).count() == 5


def test_a_row_held_by_someone_else_is_skipped_not_waited_for(reachable_policy):
    held, other = create(1), create(1)
    now = held.detected_at + timedelta(minutes=31)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            Incident.objects.select_for_update().get(pk=held.pk)
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=lambda: (hold(), connections.close_all()), daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        fired = escalation_sweep(now=now)
        assert {f.incident for f in fired} == {other.number}
        assert not EscalationEvent.objects.filter(incident=held).exists()
    finally:
        release.set()
        holder.join(10)

    fired = escalation_sweep(now=now)
    assert {(f.incident, f.step) for f in fired} == {
        (held.number, "ack-timeout"),
        (held.number, "sev1-0:30:00"),
    }


def test_a_sweep_racing_resolutions_neither_deadlocks_nor_escalates_resolved_incidents(
    reachable_policy,
):
    incidents = [create(1) for _ in range(12)]
    now = max(i.detected_at for i in incidents) + timedelta(hours=1)

    def resolve_all() -> None:
        for incident in reversed(incidents):
            incident_transition(
                incident=incident,
                action="resolve",
                actor=None,
                source=Source.SYSTEM,
                resolution="Rolled back.",
            )

    in_threads(resolve_all, lambda: escalation_sweep(now=now))

    for incident in incidents:
        esc = IncidentEscalation.objects.get(incident=incident)
        assert esc.stopped_at is not None and esc.next_due_at is None
        # Whatever fired, fired before the incident's escalation stopped, each step once.
        fired = list(EscalationEvent.objects.filter(incident=incident).values_list("step"))
        assert len(fired) == len(set(fired))
    assert escalation_sweep(now=now + timedelta(hours=5)) == []


def quiet_escalations(count: int) -> None:
    """``count`` open incidents whose escalation is nowhere near due (bulk rows, no paging)."""
    from datetime import date

    from django.utils import timezone

    now = timezone.now()
    day = date(2020, 1, 1)
    Incident.objects.bulk_create(
        Incident(
            number=f"INC-2020-0101-{n:06d}",
            day=day,
            sequence=n,
            title=f"Quiet {n}",
            severity_id=3,
            priority=3,
            detected_at=now,
            response_due_at=now + timedelta(days=30),
            resolution_due_at=now + timedelta(days=30),
        )
        for n in range(1, count + 1)
    )
    IncidentEscalation.objects.bulk_create(
        IncidentEscalation(
            incident_id=pk,
            severity_from=now,
            next_due_at=now + timedelta(days=30),
            ack_due_at=now + timedelta(days=30),
        )
        for pk in Incident.objects.filter(day=day).values_list("pk", flat=True)
    )


def test_due_rows_are_found_through_the_partial_indexes(reachable_policy):
    from django.utils import timezone

    quiet_escalations(3000)
    due = create(1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE escalation_incidentescalation")
    now = due.detected_at + timedelta(minutes=20)

    query = escalation_due(now=now).order_by("pk").values("pk")[:200]
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "BitmapOr" in plan, plan
    assert "escalation_next_due" in plan and "escalation_ack_due" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert list(escalation_due(now=now).values_list("incident", flat=True)) == [due.pk]
    assert escalation_due(now=timezone.now()).count() <= 1
