"""``notification_enqueue_many``: a mailing's rows written in the caller's transaction, once per
key (across calls and within one call), refused as a whole when a message is malformed (nothing
written), delivered after commit in tasks of 50 with the email's HTML part, allowed headers and
the Message-ID derived from the key. ``notification_enqueue_together``: the messages of one
event on the queue each would take alone, in batch tasks, their ids returned in order."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import transaction

from config.celery import app
from escalation.models import Notification, NotificationStatus
from escalation.outbox import (
    EMAIL_HEADERS,
    OutboxMessage,
    email_message_id,
    notification_enqueue_many,
    notification_enqueue_together,
)
from tests.outbox import published_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager():
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def message(n: int, **changes) -> OutboxMessage:
    fields = {
        "channel": "email",
        "recipient": f"person{n}@example.org",
        "subject": "Investigating: checkout down",
        "body": f"Hello {n}",
        "template": "status_update_email",
        "reason": "Status update",
        "idempotency_key": f"mailing:1:{n}",
        "context": {
            "html": f"<p>Hello {n}</p>",
            "headers": {
                "List-Id": '"Status" <status.example.org>',
                "In-Reply-To": "<root@example.org>",
                "References": "<root@example.org>",
                "Auto-Submitted": "auto-generated",
            },
        },
    }
    fields.update(changes)
    return OutboxMessage(**fields)


def test_each_key_is_written_once_across_calls_and_within_one(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        assert notification_enqueue_many([message(n) for n in range(3)]) == 3
        duplicate = message(1, body="a second message under key 1")
        assert notification_enqueue_many([message(n) for n in range(5)] + [duplicate]) == 2
        assert notification_enqueue_many([message(9), message(9, body="again")]) == 1
    assert Notification.objects.count() == 6
    assert Notification.objects.get(idempotency_key="mailing:1:1").body == "Hello 1"
    assert Notification.objects.get(idempotency_key="mailing:1:9").body == "Hello 9"
    assert set(Notification.objects.values_list("status", "urgent")) == {
        (NotificationStatus.PENDING, False)
    }
    assert len(callbacks) == 3  # one publication per call that wrote rows
    assert notification_enqueue_many([]) == 0


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (message(2, context={"headers": {"X-Mailer": "evil"}}), "not allowed"),
        (message(2, context={"headers": {"Bcc": "someone@example.org"}}), "not allowed"),
        (
            message(2, context={"headers": {"List-Id": "a\r\nBcc: x@example.org"}}),
            "one line",
        ),
        (message(2, context={"headers": {"References": "x" * 2001}}), "one line"),
        (
            message(2, channel="slack", recipient="#ops", context={"headers": {"List-Id": "x"}}),
            "Only email",
        ),
        (message(2, channel="carrier-pigeon"), "Unknown notification channel"),
        (message(2, recipient="  "), "recipient"),
        (message(2, idempotency_key=""), "idempotency key"),
        (message(2, idempotency_key="k" * 201), "idempotency key"),
    ],
)
def test_a_malformed_message_refuses_the_whole_call_and_writes_nothing(bad, error):
    with pytest.raises(ValueError, match=error):
        notification_enqueue_many([message(0), message(1), bad])
    assert not Notification.objects.exists()


def test_every_allowed_header_passes():
    headers = {name: "value" for name in EMAIL_HEADERS}
    assert notification_enqueue_many([message(0, context={"headers": headers})]) == 1


def test_a_rolled_back_mailing_leaves_nothing(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                notification_enqueue_many([message(n) for n in range(3)])
                raise RuntimeError("the publication failed")
        except RuntimeError:
            pass
    assert not Notification.objects.exists()
    assert callbacks == []


def test_delivered_after_commit_in_tasks_of_fifty(
    eager, django_capture_on_commit_callbacks, monkeypatch
):
    from escalation import tasks

    batches: list[int] = []
    real = tasks.notification_send_batch_task.run

    def counting(notification_ids):
        batches.append(len(notification_ids))
        return real(notification_ids)

    monkeypatch.setattr(tasks.notification_send_batch_task, "run", counting)
    with django_capture_on_commit_callbacks(execute=True):
        assert notification_enqueue_many([message(n) for n in range(120)]) == 120
        assert mail.outbox == []  # nothing leaves before commit

    assert batches == [50, 50, 20]
    assert len(mail.outbox) == 120
    assert Notification.objects.filter(status=NotificationStatus.SENT).count() == 120
    first = next(m for m in mail.outbox if m.to == ["person7@example.org"])
    raw = first.message()
    assert raw["Message-ID"] == email_message_id("mailing:1:7")
    assert raw["List-Id"] == '"Status" <status.example.org>'
    assert raw["In-Reply-To"] == "<root@example.org>"
    assert raw["Auto-Submitted"] == "auto-generated"
    assert raw["X-Vigil-Idempotency-Key"] == "mailing:1:7"
    assert first.body == "Hello 7"
    assert first.alternatives[0][0] == "<p>Hello 7</p>"
    assert first.alternatives[0][1] == "text/html"


def test_a_second_delivery_task_for_the_same_rows_sends_nothing_again(
    eager, django_capture_on_commit_callbacks
):
    from escalation.tasks import notification_send_batch_task

    with django_capture_on_commit_callbacks(execute=True):
        notification_enqueue_many([message(n) for n in range(3)])
    ids = list(Notification.objects.values_list("pk", flat=True))
    assert notification_send_batch_task.delay(ids).get() == 0
    assert len(mail.outbox) == 3


def test_a_mailing_s_lost_or_retried_messages_go_back_to_the_bulk_queue(
    django_capture_on_commit_callbacks, monkeypatch, settings
):
    """A mailing's rows stay on the bulk queue after their first task: one whose task was lost
    is re-queued there by the sweep, one that failed for a moment retries there; a page's row
    (not a mailing's) goes back to the default queue. A lost mailing never lands in front of
    pages."""
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from escalation import tasks
    from escalation.services import notification_send, notifications_requeue
    from escalation.services.outbox import notification_enqueue

    published: list[tuple[object, str]] = []
    monkeypatch.setattr(
        tasks.notification_send_task,
        "apply_async",
        lambda args, queue, **kw: published.append((args[0], queue)),
    )
    monkeypatch.setattr(tasks.notification_send_batch_task, "apply_async", lambda *a, **kw: None)
    with django_capture_on_commit_callbacks(execute=True):
        notification_enqueue_many([message(n) for n in range(2)])  # their batch task is lost
    with django_capture_on_commit_callbacks(execute=True):
        page = notification_enqueue(
            incident=None, channel="email", recipient="oncall@example.org", subject="Sev 3",
            body="Slow",
            template="page", reason="Initial notification", idempotency_key="page:lost",
        )  # fmt: skip
    lost, failing = Notification.objects.filter(bulk=True).order_by("pk")
    assert not page.bulk
    published.clear()

    later = timezone.now() + timedelta(seconds=settings.VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS + 5)
    # Re-queued rows go out as batch tasks, one per queue.
    monkeypatch.setattr(
        tasks.notification_send_batch_task,
        "apply_async",
        lambda args, queue, **kw: published.append((tuple(args[0]), queue)),
    )
    with time_machine.travel(later, tick=False):
        Notification.objects.filter(pk__in=[lost.pk, failing.pk, page.pk]).update(published_at=None)
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_requeue() == 3
    assert sorted(published, key=str) == sorted(
        [((lost.pk, failing.pk), "vigil.bulk"), ((page.pk,), "vigil")], key=str
    )

    published.clear()
    settings.EMAIL_BACKEND = "tests.escalation.test_outbox_many.FlakyBackend"
    with django_capture_on_commit_callbacks(execute=True):
        assert notification_send(notification_id=failing.pk).result == "retry"
    assert published == [(failing.pk, "vigil.bulk")]


class FlakyBackend:
    """An email backend whose server is away for a moment."""

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("the mail server is restarting")


def test_together_each_on_its_own_queue_in_batch_tasks_ids_in_order(
    make_incident, django_capture_on_commit_callbacks, django_assert_num_queries, monkeypatch
):
    batches, singles = published_tasks(monkeypatch)
    sev1, sev3 = make_incident(severity=1), make_incident(severity=3)
    existing = message(7, incident=sev1, idempotency_key="event:7")
    with django_capture_on_commit_callbacks(execute=True):
        [first] = notification_enqueue_together([existing])
    batches.clear()
    messages = [
        message(1, incident=sev1, idempotency_key="event:1"),
        message(2, incident=sev3, idempotency_key="event:2"),
        message(7, incident=sev1, idempotency_key="event:7", body="written before"),
        message(3, incident=sev1, idempotency_key="event:3"),
        message(4, idempotency_key="event:4"),
        message(1, incident=sev1, idempotency_key="event:1", body="the same key again"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        with django_assert_num_queries(2):  # one INSERT, one SELECT of the key written before
            ids = notification_enqueue_together(messages)
        assert batches == []  # nothing leaves before commit
    rows = {row.idempotency_key: row for row in Notification.objects.all()}
    assert ids == [rows[m.idempotency_key].pk for m in messages]
    assert ids[2] == first and ids[5] == ids[0]
    assert rows["event:7"].body == "Hello 7"  # the row written before is not changed
    assert rows["event:1"].body == "Hello 1"  # a key's first message is kept
    # As notification_enqueue would send each alone: Sev 1-2 on the urgent queue, the rest on
    # the default one; only the rows written now; one batch task per queue, none per row.
    assert sorted(batches) == sorted(
        [
            ([rows["event:1"].pk, rows["event:3"].pk], "vigil.urgent"),
            ([rows["event:2"].pk, rows["event:4"].pk], "vigil"),
        ]
    )
    assert singles == []
    assert [rows[k].urgent for k in ("event:1", "event:2", "event:3", "event:4")] == [
        True,
        False,
        True,
        False,
    ]
    assert not any(row.bulk for row in rows.values())
    assert all(row.published_at is not None for row in rows.values())


def test_together_delivers_every_message(eager, make_incident, django_capture_on_commit_callbacks):
    incident = make_incident(severity=2)
    with django_capture_on_commit_callbacks(execute=True):
        notification_enqueue_together(
            [message(n, incident=incident, idempotency_key=f"event:{n}") for n in range(3)]
        )
    assert sorted(m.to[0] for m in mail.outbox) == [f"person{n}@example.org" for n in range(3)]
    assert Notification.objects.filter(status=NotificationStatus.SENT).count() == 3
