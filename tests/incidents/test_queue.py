"""The one claim / lease / retry / requeue mechanism (``incidents.queue``) that incident events,
outbound notifications and inbound webhook deliveries share, tested once on a table of its own
shape (incident events); the tables' own tests show each uses it."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from incidents.models import IncidentEvent
from incidents.queue import WorkQueue, backoff_delay
from tests.events import pending_event

pytestmark = pytest.mark.django_db

QUEUE = WorkQueue(
    model=IncidentEvent,
    lease=60,
    max_attempts=3,
    backoff_base=10,
    backoff_max=100,
    requeue_after=30,
)


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def test_a_claim_is_a_lease(clock):
    work = pending_event()
    claimed = QUEUE.claim(work.pk)
    assert (claimed.status, claimed.attempts, claimed.claimed_at) == (
        "running",
        1,
        timezone.now(),
    )
    assert QUEUE.claim(work.pk) is None  # held by a live lease

    clock.shift(timedelta(seconds=61))
    again = QUEUE.claim(work.pk)  # the first claimant died: the lease ran out
    assert (again.attempts, again.claimed_at) == (2, timezone.now())


def test_due_only_waits_for_the_next_attempt(clock):
    work = pending_event()
    IncidentEvent.objects.filter(pk=work.pk).update(
        next_attempt_at=timezone.now() + timedelta(seconds=5)
    )
    assert QUEUE.claim(work.pk, due_only=True) is None
    assert QUEUE.claim(work.pk) is not None  # a task by id may run it early


def test_failures_back_off_then_give_up(clock):
    work = pending_event()
    delays = []
    for attempt in (1, 2):
        claimed = QUEUE.claim(work.pk, due_only=True)
        with transaction.atomic():
            failure = QUEUE.fail(claimed, claim=claimed.claimed_at, error=f"boom {attempt}")
        assert failure.outcome == "retry"
        assert failure.row.status == "pending" and failure.row.last_error == f"boom {attempt}"
        assert failure.row.next_attempt_at == timezone.now() + timedelta(seconds=failure.delay)
        delays.append(failure.delay)
        clock.shift(timedelta(seconds=failure.delay))
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20

    claimed = QUEUE.claim(work.pk, due_only=True)
    with transaction.atomic():
        failure = QUEUE.fail(claimed, claim=claimed.claimed_at, error="boom 3")
    assert (failure.outcome, failure.row.status, failure.row.attempts) == ("failed", "failed", 3)
    assert QUEUE.claim(work.pk) is None


def test_a_permanent_failure_gives_up_at_once():
    claimed = QUEUE.claim(pending_event().pk)
    with transaction.atomic():
        failure = QUEUE.fail(claimed, claim=claimed.claimed_at, error="no", permanent=True)
    assert (failure.outcome, failure.row.attempts) == ("failed", 1)


def test_a_superseded_claim_records_nothing(clock):
    work = pending_event()
    stale = QUEUE.claim(work.pk)
    clock.shift(timedelta(seconds=61))
    current = QUEUE.claim(work.pk)

    with transaction.atomic():
        assert QUEUE.fail(stale, claim=stale.claimed_at, error="late").outcome == "superseded"
    current.refresh_from_db()
    assert (current.status, current.last_error) == ("running", "")
    # Nor does a success: the row is the current attempt's to record, once.
    assert QUEUE.complete(stale) is False
    current.refresh_from_db()
    assert current.status == "running"
    assert QUEUE.complete(current) is True
    assert QUEUE.complete(current) is False
    current.refresh_from_db()
    assert current.status == "done"


def test_a_success_from_a_lapsed_lease_stands_while_no_other_attempt_took_over(clock):
    work = pending_event()
    claimed = QUEUE.claim(work.pk)
    clock.shift(timedelta(seconds=61))  # past the lease: the sweep put it back to pending
    with transaction.atomic():
        assert QUEUE.requeue() == [work.pk]
    assert QUEUE.complete(claimed) is True  # the work is done; its re-queued task skips it
    assert QUEUE.claim(work.pk) is None


def test_requeue_takes_lost_and_stuck_rows_once(clock):
    lost, stuck, fresh = pending_event(), pending_event(), pending_event()
    QUEUE.claim(stuck.pk)
    clock.shift(timedelta(seconds=20))
    IncidentEvent.objects.filter(pk=fresh.pk).update(next_attempt_at=timezone.now())

    clock.shift(timedelta(seconds=15))  # lost: 35 s late; fresh: 15 s; stuck: leased 35 s
    with transaction.atomic():
        assert QUEUE.requeue() == [lost.pk]
    with transaction.atomic():
        assert QUEUE.requeue() == []  # its next attempt moved to now: taken once
    QUEUE.complete(QUEUE.claim(lost.pk))  # what its re-queued task does

    clock.shift(timedelta(seconds=30))  # stuck: 65 s, past the lease
    with transaction.atomic():
        assert sorted(QUEUE.requeue()) == sorted([fresh.pk, stuck.pk])
    stuck.refresh_from_db()
    assert (stuck.status, stuck.attempts) == ("pending", 1)
    assert "worker lost" in stuck.last_error


def test_retry_now_gives_a_failed_row_a_fresh_budget():
    claimed = QUEUE.claim(pending_event().pk)
    with transaction.atomic():
        QUEUE.fail(claimed, claim=claimed.claimed_at, error="x", permanent=True)
    failed = IncidentEvent.objects.get(pk=claimed.pk)
    assert QUEUE.retry_now(failed, fresh=True) is True
    assert (failed.status, failed.attempts) == ("pending", 0)
    running = QUEUE.claim(failed.pk)
    assert QUEUE.retry_now(running, fresh=True) is False  # being worked: left alone


def test_claim_locked_counts_the_attempt_in_the_callers_transaction():
    first, second = pending_event(), pending_event()
    with transaction.atomic():
        claimed = QUEUE.claim_locked(IncidentEvent.objects.order_by("id"))
        assert claimed.pk == first.pk and claimed.attempts == 1
        QUEUE.fail_locked(claimed, error="broken")
    with transaction.atomic():
        claimed = QUEUE.claim_locked(IncidentEvent.objects.filter(attempts=0))
        assert claimed.pk == second.pk
        QUEUE.complete_locked_many([claimed])
    done = IncidentEvent.objects.get(pk=second.pk)
    assert (done.status, done.attempts) == ("done", 1)
    assert IncidentEvent.objects.get(pk=first.pk).status == "pending"


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 8])
def test_backoff_is_exponential_with_jitter_capped_and_honours_retry_after(attempts):
    ceiling = min(100, 10 * 2 ** (attempts - 1))
    delays = [backoff_delay(attempts=attempts, base=10, ceiling=100) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len({round(delay, 6) for delay in delays}) > 1
    assert backoff_delay(attempts=attempts, base=10, ceiling=100, retry_after=90) >= 90
    assert backoff_delay(attempts=attempts, base=10, ceiling=100, retry_after=9999) == 100
