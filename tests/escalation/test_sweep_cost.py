"""What the escalation sweep costs in a mass outage, and the cached policy snapshot.

The sweep's queries are pinned (at most 20 per due incident, the outbox's after-commit
publishing included; in fact a fixed number per batch), a sweep that runs out of time leaves
the rest for the next one, a batch writes its pages together but sends each page apart, and the
policy snapshot of an unchanged policy costs no query while any committed change (through the
services the admin calls) reaches the next incident's snapshot in every process.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from escalation.models import EscalationEvent, EscalationStep, IncidentEscalation
from escalation.services import escalation_sweep, policy_snapshot_take, timers
from escalation.services.policy import escalation_step_update
from escalation.services.snapshot import POLICY_SNAPSHOT
from incidents.models import EscalationContact, Incident, Source
from incidents.services import incident_create
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import T0
from tests.events import followed

reachable_policy = escalation_fixtures.reachable_policy

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
PER_DUE_INCIDENT = 20
# One sweep batch (up to 50 due incidents), its after-commit publishing included.
BATCH_QUERIES = 13


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@followed
def create(severity: int = 1, **kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return incident_create(actor=None, source=Source.SYSTEM, severity=severity, **kwargs)


def sweep_queries(django_capture_on_commit_callbacks) -> tuple[int, int]:
    """(queries, steps fired) of one sweep, counting what it runs after its commits."""
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        fired = escalation_sweep()
    return len(queries), len(fired)


# --- the sweep's cost --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_due_incident_costs_at_most_20_queries(
    reachable_policy, clock, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    counts = {}
    for due in (2, 6):
        for _ in range(due):
            create(1)  # each owes its acknowledgement timeout and its 30 min step at +31 min
        clock.shift(31 * MIN)
        counts[due], fired = sweep_queries(django_capture_on_commit_callbacks)
        assert fired == 2 * due
        clock.shift(10 * HOUR)
        escalation_sweep()  # fire everything left, so the next round starts quiet
        clock.shift(MIN)

    per_incident = (counts[6] - counts[2]) / 4
    print(f"sweep queries: {counts} ({per_incident:g} per due incident)")
    assert per_incident <= PER_DUE_INCIDENT, counts
    # In fact a batch costs the same whatever its size: its claim, its fired steps, its
    # incidents' services, its events, every page in one INSERT (contacts checked in one
    # query), the timeline entries, the due times, the publish stamps; not a query per page.
    assert counts[6] == counts[2], counts
    for _ in range(5):
        create(1)
    clock.shift(31 * MIN)
    with (
        django_assert_max_num_queries(BATCH_QUERIES),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert len(escalation_sweep()) == 10


@pytest.mark.django_db
def test_a_batch_writes_the_due_times_of_every_row_it_advanced_or_stopped(reachable_policy, clock):
    """The due times of a batch go in one statement (on PostgreSQL ``UPDATE … FROM VALUES``):
    each row gets its own, a time cleared is written as NULL whatever the other rows hold, and
    rows whose incident was closed behind the services' back are stopped with their reason."""
    from incidents.models import Status

    owing = [create(1) for _ in range(3)]
    closed = [create(1) for _ in range(2)]
    Incident.objects.filter(pk__in=[i.pk for i in closed]).update(status=Status.RESOLVED)
    before = {e.incident_id: e for e in IncidentEscalation.objects.all()}
    clock.shift(31 * MIN)

    escalation_sweep()

    after = {e.incident_id: e for e in IncidentEscalation.objects.all()}
    for incident in owing:
        esc = after[incident.pk]
        assert esc.ack_due_at is None  # fired once, cleared
        assert esc.next_due_at is not None and esc.next_due_at > before[incident.pk].next_due_at
        assert esc.stopped_at is None and esc.stop_reason == ""
    assert len({after[i.pk].next_due_at for i in owing}) == 1  # same severity, same schedule
    for incident in closed:
        esc = after[incident.pk]
        assert esc.stopped_at == T0 + 31 * MIN
        assert esc.stop_reason == "Incident resolved."
        assert esc.next_due_at is None and esc.ack_due_at is None
    assert EscalationEvent.objects.filter(incident__in=closed).count() == 0


@pytest.mark.django_db
def test_a_sweep_out_of_time_stops_between_batches_and_the_next_finishes(
    reachable_policy, clock, monkeypatch
):
    incidents = [create(2) for _ in range(5)]
    clock.shift(30 * MIN)

    class Clock:
        """The sweep's monotonic clock: the budget is spent after the first batch."""

        readings = iter([0.0, 0.5])

        @classmethod
        def monotonic(cls) -> float:
            return next(cls.readings, 100.0)

    monkeypatch.setattr(timers, "time", Clock)
    first = escalation_sweep(batch=2, time_budget=1.0)
    monkeypatch.undo()

    assert len({f.incident for f in first}) == 2
    assert IncidentEscalation.objects.filter(next_due_at__lte=T0 + 30 * MIN).count() == 3
    second = escalation_sweep(batch=2, time_budget=35)
    assert {f.incident for f in first} | {f.incident for f in second} == {
        i.number for i in incidents
    }
    assert not {f.incident for f in first} & {f.incident for f in second}
    assert EscalationEvent.objects.filter(incident__in=incidents).count() == 5
    assert escalation_sweep() == []


@pytest.mark.django_db
def test_a_failing_batch_is_retried_row_by_row(reachable_policy, clock, monkeypatch):
    incidents = [create(2) for _ in range(3)]
    clock.shift(30 * MIN)
    broken = incidents[1]
    announce = timers.announce

    def failing(firing, **kwargs):
        if firing.esc.incident_id == broken.pk:
            raise RuntimeError("a page that cannot be rendered")
        return announce(firing, **kwargs)

    monkeypatch.setattr(timers, "announce", failing)
    fired = escalation_sweep()

    assert {f.incident for f in fired} == {incidents[0].number, incidents[2].number}
    assert not EscalationEvent.objects.filter(incident=broken).exists()
    monkeypatch.undo()
    assert [f.incident for f in escalation_sweep()] == [broken.number]


# --- the policy snapshot's cache ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_snapshot_of_an_unchanged_policy_costs_no_query(django_assert_max_num_queries):
    first = policy_snapshot_take(now=T0)
    with django_assert_max_num_queries(1):
        again = policy_snapshot_take(now=T0 + HOUR)
    assert {**first, "taken_at": ""} == {**again, "taken_at": ""}
    assert again["taken_at"] == (T0 + HOUR).isoformat()
    again["matrix"]["1"].clear()  # a caller's copy: the cached snapshot is not changed
    assert policy_snapshot_take(now=T0)["matrix"]["1"]


def rows(snapshot: dict, severity: int) -> list[tuple[int, str]]:
    return [(s["elapsed_s"], s["level"]) for s in snapshot["matrix"][str(severity)]]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_committed_step_change_reaches_the_next_incident_in_every_process():
    before = policy_snapshot_take(now=T0)
    assert (3600, "cto") in rows(before, 1)
    remembered = POLICY_SNAPSHOT.memo  # what another process would still hold in memory

    step = EscalationStep.objects.get(severity_id=1, elapsed=HOUR)
    escalation_step_update(
        step=step, actor=None, source=Source.ADMIN, target=EscalationContact.objects.get(key="ceo")
    )

    # This process, and another that remembered the old version: both read the new policy.
    assert (3600, "ceo") in rows(policy_snapshot_take(now=T0), 1)
    POLICY_SNAPSHOT.memo = remembered
    assert (3600, "ceo") in rows(policy_snapshot_take(now=T0), 1)
    incident = create(1)
    snapshot = IncidentEscalation.objects.get(incident=incident).policy_snapshot
    assert (3600, "ceo") in rows(snapshot, 1) and (3600, "cto") not in rows(snapshot, 1)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_uncommitted_change_is_seen_only_by_its_transaction():
    policy_snapshot_take(now=T0)
    contact = EscalationContact.objects.select_related("contact").get(key="cto").contact

    with pytest.raises(RuntimeError), transaction.atomic():
        contact.email = "new-cto@example.com"
        contact.save()
        inside = policy_snapshot_take(now=T0)
        assert inside["levels"]["cto"]["contact"]["email"] == "new-cto@example.com"
        raise RuntimeError("rolled back")

    after = policy_snapshot_take(now=T0)
    assert after["levels"]["cto"]["contact"]["email"] != "new-cto@example.com"
    contact.refresh_from_db()
    contact.email = "cto-2@example.com"
    contact.save()  # autocommit: committed at once
    assert policy_snapshot_take(now=T0)["levels"]["cto"]["contact"]["email"] == (
        "cto-2@example.com"
    )


@pytest.mark.django_db
def test_without_the_cache_the_snapshot_is_read_from_the_database(monkeypatch):
    expected = policy_snapshot_take(now=T0)

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(POLICY_SNAPSHOT, "memo", {})
    assert policy_snapshot_take(now=T0) == expected


# --- the pages of a batch ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_writes_its_pages_together_and_sends_each_incident_s_apart(
    reachable_policy, clock, django_capture_on_commit_callbacks, monkeypatch
):
    """One INSERT for every page of the batch, but one task per incident on its severity's
    queue (the pages of different incidents go out in parallel, a Sev 1's on the urgent queue;
    the acknowledgement timeout and the steps one incident owes share its task); a contact
    deleted since the incident's policy snapshot is paged at the snapshot's address, without
    the link to the contact row."""
    from escalation import tasks
    from escalation.models import Notification
    from incidents.models import Contact

    published: list[tuple[list[int], str]] = []
    monkeypatch.setattr(
        tasks.notification_send_batch_task,
        "apply_async",
        lambda args, queue, **kw: published.append((args[0], queue)),
    )
    urgent, other = create(1), create(3)
    snapshot = IncidentEscalation.objects.get(incident=urgent).policy_snapshot
    first_step = snapshot["matrix"]["1"][0]
    level = EscalationContact.objects.get(key=first_step["level"])
    gone = level.contact
    level.contact = Contact.objects.create(name="Someone new", email="new@example.com")
    level.save()
    gone.delete()
    clock.shift(10 * HOUR)
    published.clear()  # the pages of the incidents' creation

    with django_capture_on_commit_callbacks(execute=True):
        fired = escalation_sweep()

    assert {f.incident for f in fired} == {urgent.number, other.number}
    pages = Notification.objects.filter(incident__in=[urgent, other]).exclude(
        idempotency_key__startswith="initial:"
    )
    by_task = {tuple(ids): queue for ids, queue in published}
    assert sorted(pk for ids in by_task for pk in ids) == sorted(pages.values_list("pk", flat=True))
    for ids, queue in by_task.items():
        incidents = set(pages.filter(pk__in=ids).values_list("incident", flat=True))
        assert len(incidents) == 1  # a task sends one incident's pages
        assert queue == ("vigil.urgent" if incidents == {urgent.pk} else "vigil")
    # Each incident's pages in one task, though it owed several steps.
    assert len(by_task) == 2
    assert [f.incident for f in fired].count(urgent.number) > 1
    assert set(pages.values_list("published_at", flat=True)) != {None}
    assert not pages.filter(published_at__isnull=True).exists()
    step_pages = pages.filter(
        idempotency_key__startswith=f"escalation:{urgent.pk}:{first_step['step']}:"
    )
    assert step_pages.exists()
    assert set(step_pages.values_list("contact", flat=True)) == {None}
