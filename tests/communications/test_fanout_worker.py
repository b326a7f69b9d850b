"""One status update to 1,000 subscribers through real processes: a Celery worker (and beat) on
Redis, the test database on PostgreSQL, a local SMTP server as the mail provider. Every
subscriber gets the update once; with the worker SIGKILLed midway and a new one started, every
message still arrives — the ones in flight at the kill (a chunk of sends not yet recorded) at
most once more, with the same Message-ID (at least once towards the mail server, under one
idempotency key)."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
import time
from collections import Counter, defaultdict
from email import policy

import pytest
from aiosmtpd.controller import Controller
from django.db import transaction

from communications.models import Fanout, FanoutState, Message, Subscriber, SubscriberKind
from communications.services.components import component_create
from communications.services.updates import status_update_create, status_update_publish
from escalation.models import Notification
from incidents.models import Source
from tests import workers
from tests.factories import IncidentFactory, ServiceFactory
from tests.workers import wait_for

celery_worker = workers.celery_worker
no_external_network = workers.no_external_network

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("no_external_network"),
]

SUBSCRIBERS = 1000
LOG_BACKEND = "escalation.channels.log.LogBackend"


class SmtpSink:
    """A local SMTP server recording (recipient, Message-ID) of every message accepted."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            for address in envelope.rcpt_tos:
                self.received.append((address, str(parsed["Message-ID"])))
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[tuple[str, str]]:
        """What the subscribers (@example.org) received; the staff paged when the test's
        incident was logged get theirs here too."""
        with self._lock:
            return [item for item in self.received if item[0].endswith("@example.org")]


@pytest.fixture
def smtp_sink():
    sink = SmtpSink()
    sink.controller.start()
    yield sink
    sink.controller.stop()
    asyncio.set_event_loop(asyncio.new_event_loop())


def worker_env(sink: SmtpSink, **extra: str) -> dict[str, str]:
    env = {
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "EMAIL_USE_TLS": "0",
        "EMAIL_TIMEOUT": "5",
        # A send the sink is too slow to take (a loaded machine) is retried within seconds.
        "VIGIL_NOTIFY_BACKOFF_BASE_SECONDS": "1",
        "VIGIL_NOTIFY_BACKOFF_MAX_SECONDS": "5",
        "DJANGO_DEFAULT_FROM_EMAIL": "Example Co Status <status@example.com>",
        # Anything else (pages to staff) goes to the log, never to a provider.
        "VIGIL_CHANNEL_SLACK": LOG_BACKEND,
        "VIGIL_CHANNEL_SMS": LOG_BACKEND,
        "VIGIL_CHANNEL_PHONE": LOG_BACKEND,
        "VIGIL_CHANNEL_TEAMS": LOG_BACKEND,
        "VIGIL_CHANNEL_WEBHOOK": LOG_BACKEND,
    }
    env.update(extra)
    return env


@pytest.fixture
def update(communications_lead, settings):
    settings.DEFAULT_FROM_EMAIL = "Example Co Status <status@example.com>"
    service = ServiceFactory(slug="checkout", name="Checkout (internal)", public_name="Checkout")
    component_create(service=service, actor=communications_lead)
    Subscriber.objects.bulk_create(
        Subscriber(kind=SubscriberKind.EMAIL, email=f"s{n:04d}@example.org", state="active")
        for n in range(SUBSCRIBERS)
    )
    incident = IncidentFactory(severity=3, status="investigating", services=[service])
    return status_update_create(
        incident=incident,
        actor=communications_lead,
        source=Source.ADMIN,
        public_title="Payments failing at checkout",
        public_status="investigating",
        body="Some customers cannot pay.",
        components={"checkout": "major_outage"},
    )


def publish(update, actor) -> None:
    with transaction.atomic():
        status_update_publish(status_update=update, actor=actor, source=Source.ADMIN)


def message_ids_by_recipient(received) -> dict[str, set[str]]:
    by_recipient: dict[str, set[str]] = defaultdict(set)
    for address, message_id in received:
        by_recipient[address].add(message_id)
    return by_recipient


def outbox_state() -> str:
    """Where the outbox rows stand, for a failure's message."""
    rows = Notification.objects.values_list("status", "published_at", "claimed_at", "attempts")
    states = Counter(
        (status, published is not None, claimed is not None, attempts)
        for status, published, claimed, attempts in rows
    )
    return "outbox (status, published, claimed, attempts): " + ", ".join(
        f"{key}: {count}" for key, count in sorted(states.items())
    )


def test_one_update_to_1000_subscribers_is_delivered_once_each(
    celery_worker, smtp_sink, update, communications_lead
):
    celery_worker.worker(worker_env(smtp_sink), concurrency=2)
    publish(update, communications_lead)

    wait_for(
        lambda: len(smtp_sink.snapshot()) >= SUBSCRIBERS,
        timeout=180,
        what="1,000 messages at the SMTP sink",
    )
    time.sleep(3)  # nothing more may arrive
    received = smtp_sink.snapshot()
    assert len(received) == SUBSCRIBERS
    by_recipient = message_ids_by_recipient(received)
    assert sorted(by_recipient) == [f"s{n:04d}@example.org" for n in range(SUBSCRIBERS)]
    assert len({message_id for _, message_id in received}) == SUBSCRIBERS
    ids = dict(Message.objects.values_list("recipient", "message_id"))
    assert all(by_recipient[address] == {ids[address]} for address in by_recipient)
    fanout = Fanout.objects.get(status_update=update)
    assert (fanout.state, fanout.recipients) == (FanoutState.DONE, SUBSCRIBERS)


def test_a_worker_killed_midway_loses_none_and_repeats_only_the_in_flight(
    celery_worker, smtp_sink, update, communications_lead
):
    first = celery_worker.worker(worker_env(smtp_sink), concurrency=1)
    publish(update, communications_lead)
    wait_for(lambda: len(smtp_sink.snapshot()) >= 200, timeout=120, what="200 deliveries")
    first.kill()  # SIGKILL: worker and pool child die mid-mailing
    at_kill = len(smtp_sink.snapshot())
    assert at_kill < SUBSCRIBERS, "the mailing finished before the kill; nothing was tested"

    # Recovery in seconds rather than minutes: the rows of the chunk in flight (claimed) after
    # the lease; those its batch task had not reached after the requeue grace; a message the
    # killed worker had taken but not started (a retry waiting for its countdown, never
    # acknowledged) after the publish lease. The lease leaves a slow send (a loaded machine)
    # time to finish before its chunk is taken over.
    env = worker_env(
        smtp_sink,
        VIGIL_NOTIFY_LEASE_SECONDS="10",
        VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS="1",
        VIGIL_PUBLISH_LEASE_SECONDS="20",
        VIGIL_FANOUT_LEASE_SECONDS="2",
    )
    celery_worker.worker(env, concurrency=2)
    celery_worker.beat(
        {**env, "VIGIL_OUTBOX_REQUEUE_SECONDS": "1", "VIGIL_FANOUT_SWEEP_SECONDS": "1"}
    )

    try:
        wait_for(
            lambda: len(message_ids_by_recipient(smtp_sink.snapshot())) >= SUBSCRIBERS,
            timeout=240,
            what="every subscriber's message after the restart",
        )
    except AssertionError as timeout:
        # The outbox's state on the first line: CI's short summary shows that line alone.
        raise AssertionError(f"{timeout}; {outbox_state()}\n{celery_worker.logs()}") from None
    time.sleep(4)  # several sweeps later: nothing more may arrive
    received = smtp_sink.snapshot()
    by_recipient = message_ids_by_recipient(received)
    assert len(by_recipient) == SUBSCRIBERS  # none lost
    # Each recipient's deliveries carry one Message-ID: a repeat is the same message.
    assert all(len(ids) == 1 for ids in by_recipient.values())
    assert len({next(iter(ids)) for ids in by_recipient.values()}) == SUBSCRIBERS
    repeats = len(received) - SUBSCRIBERS
    per_recipient = Counter(address for address, _ in received)
    # Only what was in flight at the kill may arrive twice: the pool process's chunk of sends
    # not yet recorded (VIGIL_NOTIFY_SEND_CHUNK, 10).
    assert 0 <= repeats <= 10, per_recipient.most_common(3)
    assert Message.objects.count() == SUBSCRIBERS
