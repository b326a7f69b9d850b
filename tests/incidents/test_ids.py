"""Incident IDs: ``INC-YYYY-MMDD-XXX`` with a per-day sequence in the configured time zone,
past 999 a day, and unique under concurrent creation (PostgreSQL, real connections)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from incidents.models import Incident, IncidentDaySequence, Source, Status
from incidents.selectors import incident_get
from incidents.services import incident_cancel, incident_create, incident_transition

ID_PATTERN = re.compile(r"^INC-(\d{4})-(\d{2})(\d{2})-(\d{3,})$")


def create(title: str = "Checkout errors") -> Incident:
    return incident_create(actor=None, source=Source.SYSTEM, title=title, severity=2)


@pytest.mark.django_db
def test_id_format_and_per_day_sequence():
    with time_machine.travel(datetime(2026, 3, 2, 9, 30, tzinfo=UTC), tick=False):
        first, second, third = create(), create(), create()
    assert [i.number for i in (first, second, third)] == [
        "INC-2026-0302-001",
        "INC-2026-0302-002",
        "INC-2026-0302-003",
    ]
    assert all(ID_PATTERN.match(i.number) for i in (first, second, third))
    assert [(i.day, i.sequence) for i in (first, second, third)] == [
        (date(2026, 3, 2), n) for n in (1, 2, 3)
    ]


@pytest.mark.django_db
def test_sequence_restarts_each_day_and_days_keep_their_own_counter():
    with time_machine.travel(datetime(2026, 3, 2, 23, 50, tzinfo=UTC), tick=False) as clock:
        assert create().number == "INC-2026-0302-001"
        assert create().number == "INC-2026-0302-002"
        clock.move_to(datetime(2026, 3, 3, 0, 5, tzinfo=UTC))
        assert create().number == "INC-2026-0303-001"
        clock.move_to(datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
        assert create().number == "INC-2026-0304-001"
    assert dict(IncidentDaySequence.objects.values_list("day", "last")) == {
        date(2026, 3, 2): 2,
        date(2026, 3, 3): 1,
        date(2026, 3, 4): 1,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "before_midnight", "after_midnight"),
    [
        # 23:59 and 00:01 local time, given in UTC: the day follows the configured zone,
        # not UTC (in Paris the UTC date is still the 2nd; in New York it is already the 3rd).
        (
            "Europe/Paris",
            datetime(2026, 3, 2, 22, 59, tzinfo=UTC),
            datetime(2026, 3, 2, 23, 1, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2026, 3, 3, 4, 59, tzinfo=UTC),
            datetime(2026, 3, 3, 5, 1, tzinfo=UTC),
        ),
    ],
)
def test_day_changes_at_midnight_in_the_configured_time_zone(
    settings, zone, before_midnight, after_midnight
):
    settings.TIME_ZONE = zone
    with time_machine.travel(before_midnight, tick=False) as clock:
        late = [create(), create()]
        clock.move_to(after_midnight)
        early = create()
    assert [i.number for i in late] == ["INC-2026-0302-001", "INC-2026-0302-002"]
    assert early.number == "INC-2026-0303-001"
    assert early.day == date(2026, 3, 3)


@pytest.mark.django_db
def test_the_thousandth_incident_of_a_day_and_beyond(superuser):
    day = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    with time_machine.travel(day, tick=False):
        create()
        # 997 more that day; only the day's counter matters for the next ID.
        counter = IncidentDaySequence.objects.get(day=date(2026, 3, 2))
        counter.last = 998
        counter.save()
        n999, n1000, n1001 = create(), create(), create()

    assert [i.number for i in (n999, n1000, n1001)] == [
        "INC-2026-0302-999",
        "INC-2026-0302-1000",
        "INC-2026-0302-1001",
    ]
    assert ID_PATTERN.match(n1000.number)
    assert n1000.sequence == 1000

    # It still works: found by its ID, transitioned, named as the original of a duplicate.
    assert incident_get(number="INC-2026-0302-1000") == n1000
    resolved = incident_transition(
        incident=n1000,
        action="resolve",
        actor=superuser,
        source=Source.API,
        resolution="Rolled back.",
    )
    assert resolved.status == Status.RESOLVED
    duplicate = incident_cancel(
        incident=n1001, actor=superuser, source=Source.API, duplicate_of="INC-2026-0302-1000"
    )
    assert duplicate.duplicate_of == n1000
    # Ordered by day and sequence, 1000 comes after 999 (as text it would not).
    ordered = Incident.objects.order_by("day", "sequence").values_list("sequence", flat=True)
    assert list(ordered)[-3:] == [999, 1000, 1001]


@pytest.mark.django_db
def test_a_failed_creation_does_not_use_up_a_number():
    with time_machine.travel(datetime(2026, 3, 2, 9, 30, tzinfo=UTC), tick=False):
        create()
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do
            incident_create(actor=None, source=Source.SYSTEM, title="Bad", severity=9)
        assert create().number == "INC-2026-0302-002"


# --- concurrency (PostgreSQL) --------------------------------------------------------------------

THREADS = 8


def create_concurrently(count: int) -> tuple[list[str], list[BaseException]]:
    """``count`` threads, each with its own database connection, create one incident at the
    same moment; returns the IDs and any errors."""
    barrier = threading.Barrier(count)
    numbers: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            incident = create(title=f"Concurrent {n}")
            with lock:
                numbers.append(incident.number)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a creator hung"
    return numbers, errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("first_of_the_day", [True, False], ids=["new-day", "existing-day"])
def test_ids_are_unique_and_consecutive_under_concurrent_creation(first_of_the_day):
    # Frozen at one instant for every thread, so all of them allocate on the same day.
    with time_machine.travel(datetime(2026, 3, 2, 9, 30, tzinfo=UTC), tick=False):
        already = 0 if first_of_the_day else 1
        if not first_of_the_day:
            create(title="Earlier")
        numbers, errors = create_concurrently(THREADS)

    assert errors == []
    assert len(numbers) == len(set(numbers)) == THREADS
    expected = {f"INC-2026-0302-{n:03d}" for n in range(already + 1, already + THREADS + 1)}
    assert set(numbers) == expected
    assert IncidentDaySequence.objects.get(day=date(2026, 3, 2)).last == already + THREADS
    assert Incident.objects.count() == already + THREADS


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_creation_across_midnight_keeps_each_days_sequence():
    # Two waves a few minutes apart either side of midnight, each racing on its own day's row.
    start = datetime(2026, 3, 2, 23, 59, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        before, errors_before = create_concurrently(4)
        clock.move_to(start + timedelta(minutes=2))
        after, errors_after = create_concurrently(4)
    assert errors_before == errors_after == []
    assert sorted(before) == [f"INC-2026-0302-{n:03d}" for n in range(1, 5)]
    assert sorted(after) == [f"INC-2026-0303-{n:03d}" for n in range(1, 5)]
