"""Following incident events with real processes: PostgreSQL, a Celery worker on Redis, a local
HTTP sink standing in for every paging provider.

These are what only real processes show: a dispatcher killed between the incident's commit and
the end of its handler pages nobody, and after a restart and a sweep the team is paged exactly
once; two dispatchers working the same incidents at the same moment run each handler once per
event; and a Sev 1 page is not queued behind Sev 4 traffic when an urgent worker consumes the
urgent queue alone (as the Procfile's ``urgent`` process does).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlparse

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection

from escalation.handlers import HANDLER as ESCALATION
from escalation.models import IncidentEscalation, Notification, NotificationStatus
from incidents.events import (
    INCIDENT_CREATED,
    default_queue,
    events_requeue,
    events_subscribe,
    events_unsubscribe,
    incident_events_follow,
    urgent_queue,
)
from incidents.models import (
    EventHandling,
    EventStatus,
    HandlingStatus,
    Incident,
    IncidentEvent,
    Kind,
    Source,
    TimelineEntry,
)
from incidents.services import incident_change_severity, incident_create
from incidents.services.common import timeline_record
from incidents.tasks import incident_events_follow_task
from tests import workers
from tests.escalation import escalation_fixtures
from tests.events import follow_events
from tests.threads import in_threads
from tests.workers import CeleryLauncher, CeleryProcess, purge_broker, wait_for

celery_worker = workers.celery_worker
http_sink = workers.http_sink
no_external_network = workers.no_external_network
reachable_policy = escalation_fixtures.reachable_policy

# Transactional tests empty the tables after each test; serialized_rollback restores the policy
# the data migrations seeded (roles, groups, the matrix).
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("no_external_network"),
]

KEY_HEADER = "X-Vigil-Idempotency-Key"
WEBHOOK_BACKEND = "escalation.channels.webhook.WebhookBackend"
LOG_BACKEND = "escalation.channels.log.LogBackend"
SEV1_CHANNELS = escalation_fixtures.CHANNELS[1]  # phone, slack, email
SEV4_CHANNELS = escalation_fixtures.CHANNELS[4]  # email


def worker_env(sink, **extra: str) -> dict[str, str]:
    """Every channel a Sev 1–4 page uses goes to the sink as a signed webhook carrying the
    notification's idempotency key; the others to the log."""
    env = {
        "VIGIL_CHANNEL_PHONE": WEBHOOK_BACKEND,
        "VIGIL_CHANNEL_SLACK": WEBHOOK_BACKEND,
        "VIGIL_CHANNEL_EMAIL": WEBHOOK_BACKEND,
        "VIGIL_CHANNEL_WEBHOOK": WEBHOOK_BACKEND,
        "VIGIL_CHANNEL_SMS": LOG_BACKEND,
        "VIGIL_CHANNEL_TEAMS": LOG_BACKEND,
        "VIGIL_WEBHOOK_URL": f"{sink.url}/page",
        "VIGIL_WEBHOOK_SECRET": "events-worker-test-secret",
    }
    env.update(extra)
    return env


def create(severity: int, title: str = "Checkout is down") -> Incident:
    """Log an incident; it commits (transactional test), and its event's kick is published."""
    return incident_create(actor=None, source=Source.SYSTEM, title=title, severity=severity)


def team_keys(incident: Incident, policy, channels: list[str]) -> set[str]:
    level = incident.severity_id
    return {
        f"initial:{incident.pk}:sev{level}:c{contact.pk}:{channel}"
        for contact in policy.team()
        for channel in channels
    }


def keys_at(sink) -> Counter:
    return Counter(request.header(KEY_HEADER) for request in sink.requests())


def created_event(incident: Incident) -> IncidentEvent:
    return IncidentEvent.objects.get(incident=incident, name=INCIDENT_CREATED)


def worker_on(
    launcher: CeleryLauncher, queues: list[str], env: dict[str, str], *, concurrency: int = 1
) -> CeleryProcess:
    """A worker consuming only ``queues`` (the Procfile's ``urgent`` process consumes the urgent
    queue alone); the launcher's own workers consume every queue."""
    worker = launcher._spawn(
        "worker-" + "+".join(queues),
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"vigil-test-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        env,
    )
    wait_for(lambda: " ready." in worker.log() or not worker.alive, timeout=90, what="a worker")
    if not worker.alive:
        raise RuntimeError("The Celery worker exited:\n" + worker.log())
    return worker


def queued(queue: str) -> int:
    """Messages waiting in a Redis queue (kombu keeps each queue as a list of its name)."""
    import redis

    return redis.Redis.from_url(django_settings.CELERY_BROKER_URL).llen(queue)


def task_succeeded(worker: CeleryProcess, task_id: str) -> bool:
    return f"[{task_id}] succeeded" in worker.log()


# --- holding a table from a second connection --------------------------------------------------


class TableLock:
    """``LOCK TABLE ... IN EXCLUSIVE MODE`` held by a connection of its own, inside an open
    transaction: readers go on, the first INSERT into the table waits until :meth:`release`."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.conn = psycopg.connect(workers.database_url(), autocommit=False)
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.conn.execute(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE')

    def waiters(self) -> list[tuple[int, str]]:
        """(pid, query) of the backends of this database blocked by this lock."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, query FROM pg_stat_activity "
                "WHERE datname = current_database() AND %s = ANY(pg_blocking_pids(pid))",
                [self.pid],
            )
            return cursor.fetchall()

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


# --- 1. a dispatcher killed mid-handling --------------------------------------------------------


@pytest.mark.redis
@pytest.mark.timeout(300)
def test_a_dispatcher_killed_between_commit_and_handling_pages_exactly_once_after_restart(
    celery_worker, http_sink, reachable_policy, settings
):
    first = celery_worker.worker(worker_env(http_sink))
    lock = TableLock(Notification._meta.db_table)
    try:
        incident = create(1)
        event = created_event(incident)
        # The worker follows the event and its escalation handler blocks on its first page.
        blocked = wait_for(
            lock.waiters, timeout=60, what="the escalation handler to wait on the lock"
        )
        assert len(blocked) == 1, blocked
        backend, query = blocked[0]
        assert query.startswith(f'INSERT INTO "{Notification._meta.db_table}"'), query
        # Followed in one transaction: still pending, and no longer stamped published, so that
        # a dead dispatcher's event looks like a lost kick to the sweep.
        running = IncidentEvent.objects.get(pk=event.pk)
        assert (running.status, running.published_at) == (EventStatus.PENDING, None)

        first.kill()  # SIGKILL to the worker and its pool child, mid-transaction
    finally:
        lock.release()
    # Its backend gets the lock, then finds the client gone and rolls the handler back.
    wait_for(lambda: not backend_alive(backend), timeout=30, what="the dead worker's backend")

    assert not Notification.objects.exists()
    # Every handler's work rolled back with it (they ran in the one transaction that also
    # records them).
    assert not EventHandling.objects.filter(event=event).exists()
    assert not IncidentEscalation.objects.filter(incident=incident).exists()
    assert not TimelineEntry.objects.filter(incident=incident, kind=Kind.NOTIFICATION).exists()
    event.refresh_from_db()
    assert (event.status, event.attempts, event.handled_at) == (EventStatus.PENDING, 0, None)
    assert http_sink.requests() == []

    # A new worker; the sweep (run here, as beat would) finds the event whose dispatcher died
    # as one whose kick was lost, once VIGIL_EVENT_REQUEUE_AFTER_SECONDS have passed, and
    # queues it again.
    short = {"VIGIL_EVENT_LEASE_SECONDS": "2", "VIGIL_EVENT_REQUEUE_AFTER_SECONDS": "1"}
    settings.VIGIL_EVENT_LEASE_SECONDS = 2
    settings.VIGIL_EVENT_REQUEUE_AFTER_SECONDS = 1
    second = celery_worker.worker(worker_env(http_sink, **short))
    wait_for(lambda: events_requeue() == 1, timeout=30, interval=0.5, what="the sweep")

    expected = team_keys(incident, reachable_policy, SEV1_CHANNELS)
    assert len(expected) == 9  # 3 people × phone, Slack, email

    def delivered() -> bool:
        return (
            set(keys_at(http_sink)) == expected
            and not Notification.objects.exclude(status=NotificationStatus.SENT).exists()
        )

    wait_for(delivered, timeout=60, what="the team's pages to be delivered")
    wait_for(lambda: created_event(incident).status == EventStatus.DONE, timeout=30)

    def assert_paged_once() -> None:
        keys = Counter(Notification.objects.values_list("idempotency_key", flat=True))
        assert keys == Counter(expected)
        assert keys_at(http_sink) == Counter(expected)
        handling = EventHandling.objects.get(event=event, handler=ESCALATION)
        assert (handling.handler, handling.status, handling.attempts) == (
            ESCALATION,
            HandlingStatus.DONE,
            1,
        )
        assert IncidentEscalation.objects.filter(incident=incident).count() == 1
        assert TimelineEntry.objects.filter(incident=incident, kind=Kind.NOTIFICATION).count() == 1
        followed = created_event(incident)
        assert (followed.status, followed.attempts) == (EventStatus.DONE, 1)

    assert_paged_once()

    # The sweep again, and the follow task published twice more (a duplicate kick, a message
    # handed out again): nothing is due, nothing is paged twice.
    assert events_requeue() == 0
    tasks = [
        incident_events_follow_task.apply_async(args=[incident.pk], queue=urgent_queue())
        for _ in range(2)
    ]
    for task in tasks:
        wait_for(lambda t=task: task_succeeded(second, t.id), timeout=30, what="a re-publish")
    time.sleep(1)  # a page written by them would be delivered by now
    assert_paged_once()
    assert second.alive


# --- 2. two dispatchers at once -----------------------------------------------------------------


COUNTER = "tests.counter"


@pytest.fixture
def counter() -> Iterator[list[tuple[int, str]]]:
    """A second follower of ``incident_created`` (besides escalation): appends a timeline entry
    the test counts, after a pause that keeps its transaction open while the other dispatcher
    arrives. Yields the calls made, as (event id, thread name)."""
    calls: list[tuple[int, str]] = []
    guard = threading.Lock()

    def count(event: IncidentEvent) -> None:
        with guard:
            calls.append((event.pk, threading.current_thread().name))
        time.sleep(0.05)
        timeline_record(
            incident=Incident.objects.get(pk=event.incident_id),
            kind=Kind.SYSTEM,
            source=Source.SYSTEM,
            actor=None,
            message="Counted by the test follower.",
            data={"counted_event": event.pk},
        )

    events_subscribe(handler=COUNTER, event=INCIDENT_CREATED, callback=count)
    yield calls
    events_unsubscribe(handler=COUNTER)


@pytest.fixture
def drained_broker() -> Iterator[None]:
    """The kicks this process publishes (nobody consumes them here) are dropped afterwards."""
    yield
    if urlparse(django_settings.CELERY_BROKER_URL).scheme.startswith("redis"):
        purge_broker()


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("lease", "same_order"),
    [
        # Each dispatcher's claim holds: they meet in the middle, each skipping what the other
        # claimed.
        pytest.param(90, False, id="leases-held"),
        # Every claim lapses at once (a lease shorter than the handlers): both dispatchers
        # claim every event and run its handlers side by side; only the UNIQUE (event,
        # handler) row, written in the handler's own transaction, keeps them to one run.
        pytest.param(0, True, id="leases-lapsed"),
    ],
)
def test_two_dispatchers_at_once_run_each_handler_once(
    reachable_policy, counter, drained_broker, settings, lease, same_order
):
    settings.VIGIL_EVENT_LEASE_SECONDS = lease
    incidents = [create(1, title=f"Checkout is down #{n}") for n in range(20)]
    ids = [incident.pk for incident in incidents]
    events = [created_event(incident).pk for incident in incidents]

    def dispatcher(order: list[int]):
        def run() -> int:
            return sum(incident_events_follow(incident_id=pk).handled for pk in order)

        return run

    handled = in_threads(
        dispatcher(ids),
        dispatcher(ids if same_order else ids[::-1]),
        timeout=120,
        start_timeout=30,
    )
    # With lapsed leases, the dispatcher that lost a race leaves its event pending, due now
    # (in production it kicks itself again): follow what is left, as that kick would.
    follow_events()

    assert all(handled), f"both dispatchers must have worked: {handled}"
    # Each (event, handler) ran once: one call, one committed effect, one record.
    assert Counter(event for event, _ in counter) == Counter({pk: 1 for pk in events})
    counted = Counter(
        TimelineEntry.objects.filter(data__has_key="counted_event").values_list(
            "data__counted_event", flat=True
        )
    )
    assert counted == Counter({pk: 1 for pk in events})
    rows = Counter(
        EventHandling.objects.filter(handler__in=[COUNTER, ESCALATION]).values_list(
            "event_id", "handler", "status"
        )
    )
    assert rows == Counter(
        {(pk, name, HandlingStatus.DONE): 1 for pk in events for name in (COUNTER, ESCALATION)}
    )
    # The other apps' handlers (communications, reviews) ran each event once too.
    others = Counter(
        EventHandling.objects.exclude(handler__in=[COUNTER, ESCALATION]).values_list(
            "event_id", "handler"
        )
    )
    assert set(others.values()) <= {1}
    assert not EventHandling.objects.exclude(status=HandlingStatus.DONE).exists()
    assert set(IncidentEvent.objects.values_list("status", flat=True)) == {EventStatus.DONE}
    # Escalation's pages: every key once, the page recorded once on each timeline.
    expected = Counter()
    for incident in incidents:
        expected.update(team_keys(incident, reachable_policy, SEV1_CHANNELS))
    assert Counter(Notification.objects.values_list("idempotency_key", flat=True)) == expected
    assert Counter(
        TimelineEntry.objects.filter(kind=Kind.NOTIFICATION).values_list("incident", flat=True)
    ) == Counter({pk: 1 for pk in ids})
    assert IncidentEscalation.objects.count() == len(incidents)


# --- 3. the urgent queue ------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.timeout(300)
def test_a_sev1_page_is_not_queued_behind_sev4_traffic(celery_worker, http_sink, reachable_policy):
    env = worker_env(http_sink)
    urgent = worker_on(celery_worker, [urgent_queue()], env)

    backlog = [create(4, title=f"Search is slow #{n}") for n in range(50)]
    sev1 = create(1, title="Payments are failing")
    logged = time.monotonic()

    expected = team_keys(sev1, reachable_policy, SEV1_CHANNELS)
    wait_for(
        lambda: Notification.objects.filter(incident=sev1).count() == len(expected),
        timeout=10,
        interval=0.05,
        what="the Sev 1's pages to be written",
    )
    written = time.monotonic() - logged
    wait_for(lambda: set(keys_at(http_sink)) == expected, timeout=20, what="the Sev 1 pages sent")
    print(f"Sev 1 paged {written:.2f} s after it was logged, behind 50 Sev 4 incidents")

    assert created_event(sev1).status == EventStatus.DONE
    assert keys_at(http_sink) == Counter(expected)
    # The Sev 4 events wait, unfollowed, their kicks on the default queue no one consumes yet.
    waiting = IncidentEvent.objects.filter(incident__in=backlog)
    assert waiting.count() == len(backlog)
    assert set(waiting.values_list("status", "attempts")) == {(EventStatus.PENDING, 0)}
    assert not EventHandling.objects.filter(event__in=waiting).exists()
    assert not Notification.objects.filter(incident__in=backlog).exists()
    assert queued(default_queue()) == len(backlog)
    assert urgent.alive

    # A worker for the default queue drains the backlog: nothing was lost, each paged once.
    celery_worker.worker(env, concurrency=2)
    wait_for(
        lambda: not IncidentEvent.objects.exclude(status=EventStatus.DONE).exists(),
        timeout=120,
        what="the backlog to be followed",
    )
    backlog_keys = Counter()
    for incident in backlog:
        backlog_keys.update(team_keys(incident, reachable_policy, SEV4_CHANNELS))
    wait_for(
        lambda: sum(keys_at(http_sink).values()) >= len(expected) + len(backlog_keys),
        timeout=120,
        what="the backlog's pages to be sent",
    )
    assert (
        Counter(
            Notification.objects.filter(incident__in=backlog).values_list(
                "idempotency_key", flat=True
            )
        )
        == backlog_keys
    )
    assert keys_at(http_sink) == Counter(expected) + backlog_keys


@pytest.mark.redis
def test_the_sweep_requeues_a_raised_incident_on_the_urgent_queue(settings, drained_broker):
    settings.VIGIL_EVENT_REQUEUE_AFTER_SECONDS = 0
    # Both kicks reached the broker (their events are stamped published) and were lost in it:
    # the sweep queues them again once the publish lease has run out, here at once.
    settings.VIGIL_PUBLISH_LEASE_SECONDS = 0
    incident = create(4, title="Search is slow")
    incident_change_severity(incident=incident, actor=None, source=Source.SYSTEM, severity=1)
    assert list(incident.events.order_by("id").values_list("urgent", flat=True)) == [False, True]
    purge_broker()  # both kicks lost (a broker restarted without its data)

    assert events_requeue() == 1
    # Its Sev 1 raise is followed (and paged) by the urgent worker, not behind Sev 4 traffic.
    assert (queued(urgent_queue()), queued(default_queue())) == (1, 0)
