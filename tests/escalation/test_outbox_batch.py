"""A batch task's sends: up to ``VIGIL_NOTIFY_SEND_CHUNK`` rows claimed in one statement and
their sends recorded in one statement, while each row keeps the rules of its own claim: a failure is
recorded for that row alone, a row another attempt took over is not overwritten, a chunk that
used half the lease gives its unsent rows back and claims them again, and a worker stopped in
the middle of a chunk records what it sent and leaves the rest claimable."""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from escalation.channels import TransientDeliveryError
from escalation.models import Notification, NotificationStatus
from escalation.outbox import OutboxMessage, notification_enqueue_many
from escalation.services import delivery
from escalation.services.delivery import notification_send_batch
from tests.outbox import published_tasks

pytestmark = pytest.mark.django_db

# What the scripted backend does for a recipient, before it answers: raise, or change things.
script: dict[str, Callable[[Notification], None]] = {}
sent_to: list[str] = []


class ScriptedBackend:
    """Sends by noting the recipient; a script can make one recipient fail or wait."""

    def send(self, notification: Notification) -> str:
        action = script.get(notification.recipient)
        if action is not None:
            action(notification)
        sent_to.append(notification.recipient)
        return f"id-{notification.recipient}"


@pytest.fixture(autouse=True)
def scripted(settings, django_capture_on_commit_callbacks):
    settings.VIGIL_CHANNEL_BACKENDS = {
        "webhook": "tests.escalation.test_outbox_batch.ScriptedBackend"
    }
    script.clear()
    sent_to.clear()
    yield
    script.clear()
    sent_to.clear()


def _rows(count: int) -> list[int]:
    messages = [
        OutboxMessage(
            channel="webhook",
            recipient=f"hook{n}",
            subject="Sev 1: checkout down",
            body="Checkout is down",
            template="page",
            reason="Initial notification",
            idempotency_key=f"batch:{n}",
        )
        for n in range(count)
    ]
    new: list[int] = []
    notification_enqueue_many(messages, new_ids=new)  # its publish is never run here
    return new


class Stopped(BaseException):
    """As a worker's hard stop: not an error a delivery records."""


def stop(notification: Notification) -> None:
    """A script that stops the worker at this recipient's send."""
    raise Stopped


def _states(ids: list[int]) -> list[tuple[str, int]]:
    rows = Notification.objects.in_bulk(ids)
    return [(rows[pk].status, rows[pk].attempts) for pk in ids]


def test_a_chunk_is_one_claim_and_one_record_and_every_row_keeps_its_own_result(
    django_assert_max_num_queries, settings
):
    assert settings.VIGIL_NOTIFY_SEND_CHUNK == 10
    ids = _rows(13)
    with django_assert_max_num_queries(1 + 2 * 2 + 1):
        assert notification_send_batch(notification_ids=ids) == 13
    assert sent_to == [f"hook{n}" for n in range(13)]
    rows = Notification.objects.in_bulk(ids)
    for n, pk in enumerate(ids):
        assert rows[pk].status == NotificationStatus.SENT
        assert rows[pk].provider_message_id == f"id-hook{n}"
        assert rows[pk].sent_at is not None
        assert rows[pk].attempts == 1
    # Each row its own sent time, in the order they were sent.
    times = [rows[pk].sent_at for pk in ids]
    assert times == sorted(times)


def test_a_failure_in_the_middle_is_recorded_for_that_row_alone():
    ids = _rows(4)

    def down(notification):
        raise TransientDeliveryError("HTTP 503")

    script["hook1"] = down
    assert notification_send_batch(notification_ids=ids) == 3
    assert _states(ids) == [
        ("sent", 1),
        ("pending", 1),
        ("sent", 1),
        ("sent", 1),
    ]
    waiting = Notification.objects.get(pk=ids[1])
    assert "HTTP 503" in waiting.last_error
    assert waiting.claimed_at is not None  # its failure was recorded under the chunk's claim
    # Run again (the retry's task), only the failed row is sent.
    script.clear()
    sent_to.clear()
    Notification.objects.filter(pk=ids[1]).update(next_attempt_at=waiting.created_at)
    assert notification_send_batch(notification_ids=ids) == 1
    assert sent_to == ["hook1"]


def test_a_row_taken_over_by_another_attempt_is_not_overwritten_by_the_chunk_s_record():
    ids = _rows(3)
    taken_over = {}

    def lapse(notification):
        # Meanwhile another worker claimed row 0 again (its lease had lapsed): a new claim.
        row = Notification.objects.get(pk=ids[0])
        taken_over["claim"] = row.claimed_at.replace(year=row.claimed_at.year + 1)
        Notification.objects.filter(pk=ids[0]).update(claimed_at=taken_over["claim"])

    script["hook2"] = lapse
    assert notification_send_batch(notification_ids=ids) == 3  # three were sent by this task
    row = Notification.objects.get(pk=ids[0])
    assert row.status == NotificationStatus.SENDING  # the other attempt's to record
    assert row.claimed_at == taken_over["claim"]
    assert row.provider_message_id == ""
    assert _states(ids[1:]) == [("sent", 1), ("sent", 1)]


def test_a_chunk_that_used_half_the_lease_gives_its_unsent_rows_back_and_claims_them_again(
    monkeypatch, settings
):
    settings.VIGIL_NOTIFY_LEASE_SECONDS = 120
    clock = {"now": 1000.0}
    monkeypatch.setattr(
        delivery, "time", types.SimpleNamespace(monotonic=lambda: clock["now"], sleep=None)
    )
    claims: dict[str, object] = {}

    def slow(notification):
        claims[notification.recipient] = notification.claimed_at
        clock["now"] += 61  # a provider that takes just over half the lease

    ids = _rows(3)
    for n in range(3):
        script[f"hook{n}"] = slow
    assert notification_send_batch(notification_ids=ids) == 3
    assert sent_to == ["hook0", "hook1", "hook2"]
    # Each row was sent under a claim taken after the previous send: no claim was older
    # than half the lease when its row was sent, and no attempt was counted twice.
    assert len(set(claims.values())) == 3
    assert _states(ids) == [("sent", 1), ("sent", 1), ("sent", 1)]


def test_a_worker_stopped_mid_chunk_records_what_it_sent_and_gives_back_what_it_did_not_reach():
    ids = _rows(4)
    script["hook2"] = stop
    with pytest.raises(Stopped):
        notification_send_batch(notification_ids=ids)
    assert sent_to == ["hook0", "hook1"]
    states = _states(ids)
    assert states[:2] == [("sent", 1), ("sent", 1)]
    # The row being sent stays claimed until its lease runs out (it may have been sent);
    # the one never reached is claimable again at once, its attempt not counted.
    assert states[2] == ("sending", 1)
    assert states[3] == ("pending", 0)
    assert Notification.objects.get(pk=ids[3]).claimed_at is None
    script.clear()
    sent_to.clear()
    assert notification_send_batch(notification_ids=ids) == 1
    assert sent_to == ["hook3"]


@pytest.mark.parametrize(("chunk", "recorded_before_the_third"), [(10, 0), (1, 2)])
def test_the_chunk_size_says_how_many_sends_wait_for_their_record(
    settings, chunk, recorded_before_the_third
):
    """With chunks of 10, the first two sends are recorded with the third's chunk; with
    ``VIGIL_NOTIFY_SEND_CHUNK=1`` each send is recorded before the next one goes out."""
    settings.VIGIL_NOTIFY_SEND_CHUNK = chunk
    ids = _rows(3)
    seen = {}

    def look(notification):
        seen["sent"] = Notification.objects.filter(pk__in=ids[:2], status="sent").count()

    script["hook2"] = look
    assert notification_send_batch(notification_ids=ids) == 3
    assert seen["sent"] == recorded_before_the_third
    assert _states(ids) == [("sent", 1)] * 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_batch_tasks_over_the_same_rows_at_once_send_each_row_once():
    """A duplicate batch task (a re-queue while the first was still working): both claim
    chunks of the same rows at the same moment; each row is claimed, sent and recorded by
    one of them only."""
    ids = _rows(40)
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def batch(order: list[int]) -> None:
        try:
            barrier.wait()
            counts.append(notification_send_batch(notification_ids=order))
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    # One in the rows' order, one backwards: their chunks overlap throughout.
    threads = [
        threading.Thread(target=batch, args=(list(ids),)),
        threading.Thread(target=batch, args=(list(reversed(ids)),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(counts) == 40
    assert sorted(sent_to) == sorted(f"hook{n}" for n in range(40))
    assert _states(ids) == [("sent", 1)] * 40


def test_a_batch_task_takes_up_its_published_due_rows_and_leaves_a_row_waiting_for_its_retry(
    settings,
):
    """Taken up: the due rows lose their publish stamp (a worker that dies now leaves them to
    the sweep's short grace, not the publish lease) and are due now; a row waiting for its
    retry's backoff keeps its stamp and its time."""
    settings.VIGIL_NOTIFY_SEND_CHUNK = 1
    ids = _rows(3)
    stamped = timezone.now() - timedelta(seconds=30)
    later = timezone.now() + timedelta(minutes=5)
    Notification.objects.filter(pk__in=ids).update(published_at=stamped, next_attempt_at=stamped)
    Notification.objects.filter(pk=ids[2]).update(next_attempt_at=later)
    script["hook0"] = stop  # the worker stops at its first send
    with pytest.raises(Stopped):
        notification_send_batch(notification_ids=ids)
    rows = Notification.objects.in_bulk(ids)
    assert rows[ids[1]].status == "pending"
    assert rows[ids[1]].published_at is None
    assert stamped < rows[ids[1]].next_attempt_at <= timezone.now()
    assert rows[ids[2]].published_at == stamped
    assert rows[ids[2]].next_attempt_at == later


# --- the retries of a batch --------------------------------------------------------------


@pytest.fixture
def publishes(monkeypatch):
    """The send tasks the outbox would publish, kept: the batch tasks (ids, queue), the one-row
    tasks (id, queue), and the countdowns of all of them in the order published."""
    countdowns: list[float | None] = []
    batches, singles = published_tasks(monkeypatch, countdowns=countdowns)
    return batches, singles, countdowns


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """The callbacks after commit, run as they would outside the test's transaction."""
    return django_capture_on_commit_callbacks


def down(notification: Notification) -> None:
    raise TransientDeliveryError("HTTP 503")


def limited(seconds: float) -> Callable[[Notification], None]:
    def answer(notification: Notification) -> None:
        raise TransientDeliveryError("HTTP 429", retry_after=seconds)

    return answer


def test_the_failed_sends_of_a_chunk_are_retried_in_one_batch_task_due_after_their_backoff(
    publishes, on_commit
):
    """A provider that is down for a whole batch: no one-row task per failed send, but one
    batch task per chunk, due when the last of its rows is, and every row stamped published
    (the requeue sweep leaves it to that task)."""
    ids = _rows(13)
    Notification.objects.filter(pk__in=ids).update(bulk=False)
    for n in range(13):
        script[f"hook{n}"] = down
    started = timezone.now()
    with on_commit(execute=True):
        assert notification_send_batch(notification_ids=ids) == 0
    batches, singles, countdowns = publishes
    assert singles == []
    assert [queue for _, queue in batches] == ["vigil", "vigil"]
    assert [sorted(batch) for batch, _ in batches] == [ids[:10], ids[10:]]
    rows = Notification.objects.in_bulk(ids)
    for (batch, _), countdown in zip(batches, countdowns, strict=True):
        waits = [(rows[pk].next_attempt_at - started).total_seconds() for pk in batch]
        # The first attempt's backoff: 5 to 10 s (10 s, halved and jittered).
        assert all(4.9 < wait < 10.5 for wait in waits)
        # Due once every row of it is: none is claimed early, none waits much longer.
        assert max(waits) - 0.5 < countdown <= 10
    for pk in ids:
        assert (rows[pk].status, rows[pk].attempts) == ("pending", 1)
        assert rows[pk].published_at is not None


def test_retries_far_apart_go_in_separate_batch_tasks_and_each_queue_gets_its_own(
    publishes, on_commit
):
    """A row held back by the provider's Retry-After does not hold back the rows due in
    seconds, and a retry of a Sev 1-2 page stays on the urgent queue."""
    ids = _rows(5)
    Notification.objects.filter(pk__in=ids).update(bulk=False)
    Notification.objects.filter(pk=ids[4]).update(urgent=True)
    script["hook0"] = down
    script["hook1"] = limited(300)
    script["hook2"] = down
    script["hook4"] = down
    with on_commit(execute=True):
        assert notification_send_batch(notification_ids=ids) == 1
    batches, singles, countdowns = publishes
    found = sorted(
        (queue, sorted(batch), countdown // 100)
        for (batch, queue), countdown in zip(batches, countdowns, strict=True)
    )
    assert found == [
        ("vigil", [ids[0], ids[2]], 0),
        ("vigil", [ids[1]], 3),
        ("vigil.urgent", [ids[4]], 0),
    ]
    assert singles == []


def test_a_single_row_s_task_still_retries_with_a_task_of_its_own(publishes, on_commit):
    from escalation.services.delivery import notification_send

    ids = _rows(1)
    Notification.objects.filter(pk__in=ids).update(bulk=False)
    script["hook0"] = limited(30)
    with on_commit(execute=True):
        assert notification_send(notification_id=ids[0]).result == "retry"
    assert publishes == ([], [(ids[0], "vigil")], [30.0])


def test_the_retries_are_published_when_the_worker_stops_mid_chunk(publishes, on_commit):
    ids = _rows(3)
    Notification.objects.filter(pk__in=ids).update(bulk=False)
    script["hook0"] = down
    script["hook1"] = stop
    with on_commit(execute=True), pytest.raises(Stopped):
        notification_send_batch(notification_ids=ids)
    batches, singles, _ = publishes
    assert (batches, singles) == ([([ids[0]], "vigil")], [])
    assert Notification.objects.get(pk=ids[0]).published_at is not None


def test_a_retry_whose_publish_fails_is_left_unmarked_for_the_requeue_sweep(monkeypatch, on_commit):
    from escalation import tasks

    def broken(*args, **kwargs):
        raise ConnectionError("broker away")

    monkeypatch.setattr(tasks.notification_send_batch_task, "apply_async", broken)
    ids = _rows(2)
    script["hook0"] = down
    with on_commit(execute=True):
        assert notification_send_batch(notification_ids=ids) == 1
    waiting = Notification.objects.get(pk=ids[0])
    assert (waiting.status, waiting.published_at) == ("pending", None)


def test_eagerly_the_retry_batch_sends_what_failed(settings, on_commit):
    """With tasks run at once, the retry's batch task runs and sends the row that failed."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        ids = _rows(3)
        failures = []

        def once(notification):
            if not failures:
                failures.append(notification.recipient)
                raise TransientDeliveryError("HTTP 503")

        script["hook1"] = once
        with on_commit(execute=True):
            assert notification_send_batch(notification_ids=ids) == 2
    finally:
        app.conf.task_always_eager = False
    assert failures == ["hook1"]
    assert sorted(sent_to) == ["hook0", "hook1", "hook2"]
    assert _states(ids) == [("sent", 1), ("sent", 2), ("sent", 1)]
