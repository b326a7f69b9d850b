"""The first-update sweep under concurrency, on PostgreSQL: sweeps started at the same moment
(two beats, a beat and a slow worker) remind once per reminder point and record each miss once;
a clock someone else holds is skipped, not waited for; a publication racing a sweep neither
deadlocks nor is overtaken by a miss recorded after it."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from communications.models import FirstUpdateClock, StatusUpdate, UpdateState, UpdateStatus
from communications.services.clock import first_update_published
from communications.services.clock_sweep import first_update_sweep
from escalation.models import Notification
from incidents.models import Incident, Kind, Source, TimelineEntry
from incidents.services import incident_acknowledge, incident_create
from tests.escalation.test_sweep_pg import in_threads
from tests.events import followed

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

MIN = timedelta(minutes=1)


def confirmed(count: int) -> list[Incident]:
    incidents = []
    for n in range(count):
        incident = followed(incident_create)(
            actor=None,
            source=Source.SYSTEM,
            title=f"Checkout is down {n}",
            severity=3,
            customer_facing=True,
        )
        incidents.append(
            followed(incident_acknowledge)(incident=incident, actor=None, source=Source.SYSTEM)
        )
    return incidents


def reminder_entries() -> Counter:
    return Counter(
        (e.incident_id, e.data.get("point"))
        for e in TimelineEntry.objects.filter(kind=Kind.NOTIFICATION)
        if e.data.get("first_update") == "reminder"
    )


def test_sweeps_at_the_same_moment_remind_once_and_record_each_miss_once():
    incidents = confirmed(12)
    start = max(FirstUpdateClock.objects.values_list("confirmed_at", flat=True))
    sweeps = 4

    for minutes in (15, 25, 30):
        now = start + minutes * MIN
        results = in_threads(*[lambda now=now: first_update_sweep(now=now, batch=5)] * sweeps)
        actions = Counter((a.incident, a.action, a.minutes) for r in results for a in r)
        assert len(actions) == 12
        assert set(actions.values()) == {1}

    # Per incident: the primary at 15; the primary and the backup at 25 and when overdue.
    keys = Counter(
        n.idempotency_key.split(":")[2]
        for n in Notification.objects.filter(idempotency_key__startswith="comms-first-update:")
    )
    assert keys == {"15": 12, "25": 24, "overdue": 24}
    assert set(reminder_entries().values()) == {1}
    assert len(reminder_entries()) == 12 * 3
    misses = TimelineEntry.objects.filter(kind=Kind.COMMUNICATION, message__startswith="Missed")
    assert misses.count() == 12
    assert sorted(misses.values_list("incident_id", flat=True)) == sorted(i.pk for i in incidents)
    assert set(FirstUpdateClock.objects.values_list("next_check_at", flat=True)) == {None}
    assert first_update_sweep(now=start + 60 * MIN) == []


def test_a_clock_someone_else_holds_is_skipped_not_waited_for():
    held, other = confirmed(2)
    now = timezone.now() + 16 * MIN
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            FirstUpdateClock.objects.select_for_update().get(incident=held)
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=lambda: (hold(), connections.close_all()), daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        assert [a.incident for a in first_update_sweep(now=now)] == [other.number]
    finally:
        release.set()
        holder.join(10)

    assert [a.incident for a in first_update_sweep(now=now)] == [held.number]


def test_a_publication_racing_the_sweep_at_the_due_time_neither_deadlocks_nor_is_lost():
    incidents = confirmed(10)
    now = max(FirstUpdateClock.objects.values_list("due_at", flat=True))

    def publish_all() -> None:
        for incident in reversed(incidents):
            with transaction.atomic():
                Incident.objects.select_for_update().get(pk=incident.pk)
                StatusUpdate.objects.create(
                    incident=incident,
                    public_title="Checkout errors",
                    public_status=UpdateStatus.INVESTIGATING,
                    body="We are looking into it.",
                    state=UpdateState.PUBLISHED,
                    published_at=now,
                )
                first_update_published(incident=incident, at=now)

    in_threads(publish_all, lambda: first_update_sweep(now=now, batch=3))

    clocks = FirstUpdateClock.objects.all()
    assert all(c.met_at is not None for c in clocks)
    assert set(c.next_check_at for c in clocks) == {None}
    # Each incident: met, and missed at most once (only when the sweep got there first).
    for incident in incidents:
        entries = TimelineEntry.objects.filter(incident=incident, kind=Kind.COMMUNICATION)
        assert sum(e.data.get("first_update") == "met" for e in entries) == 1
        assert sum(e.data.get("first_update") == "missed" for e in entries) <= 1
