"""Writes racing on one incident over real PostgreSQL connections (one per thread, released
together by a barrier): one transition wins, the other gets a clear domain error or is the
idempotent no-op, and nothing is lost. The row lock is what makes this so: a second writer
waits for the first one's commit and then decides on what was committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection, transaction

from incidents.errors import InvalidInput, TransitionNotAllowed
from incidents.events import INCIDENT_TRANSITIONED
from incidents.models import Incident, IncidentEvent, Kind, Source, Status
from incidents.services import (
    incident_cancel,
    incident_change_severity,
    incident_role_assign,
    incident_transition,
    incident_update,
)
from tests.factories import IncidentFactory, UserFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.timeout(120),
]

ROUNDS = 3

COMPLETE = {
    "summary": "Checkout returned 500s.",
    "root_cause": "Bad configuration push.",
    "resolution": "Reverted the configuration.",
    "business_impact": "2,000 failed orders.",
}


@dataclass
class Outcome:
    result: Any = None
    error: BaseException | None = None
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Race:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def winners(self) -> list[int]:
        return [n for n, o in enumerate(self.outcomes) if o.error is None]


def race(*calls: Callable[[], Any]) -> Race:
    """Run each call in its own thread and database connection, all released at once."""
    barrier = threading.Barrier(len(calls))
    outcomes = [Outcome() for _ in calls]

    def work(n: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=10)
            outcomes[n].started = time.monotonic()
            outcomes[n].result = calls[n]()
        except BaseException as exc:
            outcomes[n].error = exc
        finally:
            outcomes[n].finished = time.monotonic()
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    return Race(outcomes)


def last_event() -> int:
    return IncidentEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def announced(*, since: int) -> list[dict]:
    """The ``incident_transitioned`` events committed after event ``since``, in order, as their
    payloads with the actor id and source."""
    events = IncidentEvent.objects.filter(name=INCIDENT_TRANSITIONED, pk__gt=since).order_by("pk")
    return [{**e.payload, "actor_id": e.actor_id, "source": e.source} for e in events]


@pytest.fixture
def manager(db):
    return UserFactory(username="im-race", groups=["Incident Manager"])


@pytest.fixture
def lead(db):
    return UserFactory(username="tl-race", groups=["Technical Lead"])


def status_entries(incident: Incident) -> list:
    return list(incident.timeline.filter(kind=Kind.STATUS).order_by("id"))


def transition(incident: Incident, action: str, actor, **params) -> Callable[[], Incident]:
    return lambda: incident_transition(
        incident=incident, action=action, actor=actor, source=Source.API, **params
    )


# --- two transitions that exclude each other -----------------------------------------------------

EXCLUSIVE = {
    "resolve-vs-cancel": (
        Status.INVESTIGATING,
        ("resolve", {"resolution": "Restarted the pool."}, Status.RESOLVED),
        ("cancel", {"reason": "Was a test alert."}, Status.CANCELLED),
    ),
    "close-vs-reopen": (
        Status.RESOLVED,
        ("close", {}, Status.CLOSED),
        ("reopen", {"reason": "Errors are back."}, Status.INVESTIGATING),
    ),
    "cancel-vs-resolve-from-open": (
        Status.OPEN,
        ("cancel", {"reason": "Duplicate page."}, Status.CANCELLED),
        ("resolve", {"resolution": "Self-healed."}, Status.RESOLVED),
    ),
}


@pytest.mark.parametrize("name", sorted(EXCLUSIVE))
def test_exclusive_transitions_racing_one_wins(name, manager):
    start, first, second = EXCLUSIVE[name]
    for _ in range(ROUNDS):
        incident = IncidentFactory(status=start, **COMPLETE)
        entries_before = status_entries(incident)
        history_before = incident.history.count()
        since = last_event()

        result = race(
            transition(incident, first[0], manager, **first[1]),
            transition(incident, second[0], manager, **second[1]),
        )

        assert len(result.winners) == 1, [o.error for o in result.outcomes]
        winner = result.winners[0]
        won, lost = (first, second) if winner == 0 else (second, first)
        error = result.outcomes[1 - winner].error
        assert isinstance(error, TransitionNotAllowed), repr(error)
        # The loser is told what happened: the status the winner left.
        assert (error.action, error.status) == (lost[0], won[2])
        assert error.message.startswith(f"Cannot {lost[0]} an incident that is {won[2]}.")

        stored = Incident.objects.get(pk=incident.pk)
        assert stored.status == won[2]
        new_entries = status_entries(stored)[len(entries_before) :]
        assert [e.data["action"] for e in new_entries] == [won[0]]
        assert new_entries[0].actor == manager
        history = list(stored.history.order_by("history_id"))[history_before:]
        assert [(h.history_change_reason, h.status) for h in history] == [(won[0], won[2])]
        assert [(c["action"], c["to_status"]) for c in announced(since=since)] == [(won[0], won[2])]


# --- two of the same transition ------------------------------------------------------------------

SAME = {
    "two-acknowledges": (Status.OPEN, "acknowledge", [{}, {}], Status.ACKNOWLEDGED),
    "two-resolves": (
        Status.MONITORING,
        "resolve",
        [{"resolution": "Fix A."}, {"resolution": "Fix B."}],
        Status.RESOLVED,
    ),
    "two-cancels": (
        Status.ACKNOWLEDGED,
        "cancel",
        [{"reason": "Reason A."}, {"reason": "Reason B."}],
        Status.CANCELLED,
    ),
}


@pytest.mark.parametrize("name", sorted(SAME))
def test_the_same_transition_twice_happens_once(name, manager):
    start, action, params, target = SAME[name]
    second_manager = UserFactory(username="im-race-2", groups=["Incident Manager"])
    actors = (manager, second_manager)
    for _ in range(ROUNDS):
        incident = IncidentFactory(status=start, **COMPLETE)
        entries_before = status_entries(incident)
        history_before = incident.history.count()
        since = last_event()

        result = race(
            transition(incident, action, actors[0], **params[0]),
            transition(incident, action, actors[1], **params[1]),
        )

        # Both calls succeed: one did it, the other found it done (the idempotent no-op).
        assert result.winners == [0, 1], [o.error for o in result.outcomes]
        assert all(o.result.status == target for o in result.outcomes)
        stored = Incident.objects.get(pk=incident.pk)
        assert stored.status == target
        new_entries = status_entries(stored)[len(entries_before) :]
        assert len(new_entries) == 1
        winner = actors.index(new_entries[0].actor)
        history = list(stored.history.order_by("history_id"))[history_before:]
        assert [(h.history_user, h.history_change_reason) for h in history] == [
            (actors[winner], action)
        ]
        assert [(c["action"], c["actor_id"]) for c in announced(since=since)] == [
            (action, actors[winner].pk)
        ]
        # The stored details are the winner's, whole (not a mix of both calls).
        if action == "resolve":
            assert stored.resolution == params[winner]["resolution"]
        if action == "cancel":
            assert stored.cancel_reason == params[winner]["reason"]
            assert new_entries[0].data["reason"] == params[winner]["reason"]


# --- different writes on one incident: both apply, nothing is lost -------------------------------


def test_a_transition_and_a_severity_change_both_apply(manager, lead):
    for _ in range(ROUNDS):
        incident = IncidentFactory(status="open", severity=3)
        history_before = incident.history.count()
        result = race(
            transition(incident, "acknowledge", lead),
            lambda incident=incident: incident_change_severity(
                incident=incident, actor=manager, source=Source.ADMIN, severity=1
            ),
        )
        assert result.winners == [0, 1], [o.error for o in result.outcomes]
        stored = Incident.objects.get(pk=incident.pk)
        # Without the lock the later save would have written back the stale status or
        # severity it had read.
        assert (stored.status, stored.severity_id) == (Status.ACKNOWLEDGED, 1)
        assert stored.acknowledged_at is not None
        assert stored.history.count() == history_before + 2
        assert stored.timeline.filter(kind=Kind.SEVERITY).count() == 1
        assert stored.timeline.filter(kind=Kind.STATUS).count() == 1


def test_an_edit_and_a_transition_both_apply(manager):
    for _ in range(ROUNDS):
        incident = IncidentFactory(status="investigating", resolution="")
        result = race(
            lambda incident=incident: incident_update(
                incident=incident,
                actor=manager,
                source=Source.ADMIN,
                title="Checkout down in EU",
                root_cause="Expired certificate.",
            ),
            transition(incident, "mitigate", manager),
        )
        assert result.winners == [0, 1], [o.error for o in result.outcomes]
        stored = Incident.objects.get(pk=incident.pk)
        assert (stored.title, stored.root_cause, stored.status) == (
            "Checkout down in EU",
            "Expired certificate.",
            Status.MITIGATING,
        )


def test_two_assignments_of_one_role_queue(manager, lead):
    other = UserFactory(username="tl-other", groups=["Technical Lead"])
    incident = IncidentFactory()
    result = race(
        lambda: incident_role_assign(
            incident=incident, role="technical_lead", user=lead, actor=manager, source="api"
        ),
        lambda: incident_role_assign(
            incident=incident, role="technical_lead", user=other, actor=manager, source="api"
        ),
    )
    assert result.winners == [0, 1], [o.error for o in result.outcomes]
    assignments = list(incident.role_assignments.all())
    assert len(assignments) == 1
    entries = list(incident.timeline.filter(kind=Kind.ROLE).order_by("id"))
    assert len(entries) == 2
    # The second entry names the first holder as the one replaced: it saw the first commit.
    first_holder = entries[0].data["user"]
    assert "replacing" in entries[1].message
    assert assignments[0].user_id == entries[1].data["user"] != first_holder


def test_two_incidents_cancelled_as_duplicates_of_each_other_at_once(manager):
    for _ in range(ROUNDS):
        first, second = IncidentFactory(), IncidentFactory()
        result = race(
            lambda first=first, second=second: incident_cancel(
                incident=first, actor=manager, source=Source.API, duplicate_of=second.number
            ),
            lambda first=first, second=second: incident_cancel(
                incident=second, actor=manager, source=Source.API, duplicate_of=first.number
            ),
        )
        assert len(result.winners) == 1, [o.error for o in result.outcomes]
        winner = result.winners[0]
        error = result.outcomes[1 - winner].error
        assert isinstance(error, InvalidInput), repr(error)
        assert "itself cancelled" in error.errors["duplicate_of"]
        cancelled, original = (first, second) if winner == 0 else (second, first)
        cancelled.refresh_from_db()
        original.refresh_from_db()
        assert (cancelled.status, cancelled.duplicate_of_id) == (Status.CANCELLED, original.pk)
        assert (original.status, original.duplicate_of_id) == (Status.OPEN, None)


# --- the row lock is what serialises them --------------------------------------------------------


def backend_waiting_on_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


WAITERS = {
    "acknowledge": lambda incident, actor: incident_transition(
        incident=incident, action="acknowledge", actor=actor, source=Source.API
    ),
    "update": lambda incident, actor: incident_update(
        incident=incident, actor=actor, source=Source.API, title="Renamed while locked"
    ),
    "change-severity": lambda incident, actor: incident_change_severity(
        incident=incident, actor=actor, source=Source.API, severity=1
    ),
    "assign-role": lambda incident, actor: incident_role_assign(
        incident=incident, role="incident_manager", user=actor, actor=actor, source=Source.API
    ),
}


@pytest.mark.parametrize("writer", sorted(WAITERS))
def test_a_writer_waits_for_the_row_lock_and_then_sees_the_commit(writer, manager):
    incident = IncidentFactory(status="open", severity=3)
    holding, release = threading.Event(), threading.Event()
    waiter_pid: list[int] = []
    outcome = Outcome()

    def hold_the_lock_then_cancel() -> None:
        try:
            with transaction.atomic():
                Incident.objects.select_for_update().get(pk=incident.pk)
                holding.set()
                assert release.wait(timeout=30)
                incident_cancel(incident=incident, actor=manager, source="admin", reason="Test.")
        finally:
            connection.close()

    def write() -> None:
        try:
            connection.ensure_connection()
            waiter_pid.append(connection.connection.info.backend_pid)
            outcome.result = WAITERS[writer](incident, manager)
        except BaseException as exc:
            outcome.error = exc
        finally:
            outcome.finished = time.monotonic()
            connection.close()

    holder = threading.Thread(target=hold_the_lock_then_cancel)
    holder.start()
    assert holding.wait(timeout=10)
    waiter = threading.Thread(target=write)
    waiter.start()
    try:
        deadline = time.monotonic() + 10
        while not (waiter_pid and backend_waiting_on_lock(waiter_pid[0])):
            assert time.monotonic() < deadline, "the writer never waited for the lock"
            assert waiter.is_alive(), f"the writer did not wait: {outcome.error!r}"
            time.sleep(0.02)
        time.sleep(0.2)
        assert waiter.is_alive()  # still blocked while the lock is held
        released_at = time.monotonic()
    finally:
        release.set()
        holder.join(timeout=30)
        waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert outcome.finished >= released_at

    stored = Incident.objects.get(pk=incident.pk)
    assert stored.status == Status.CANCELLED  # the holder's change was not overwritten
    if writer == "acknowledge":
        # It decided on the committed state: acknowledging a cancelled incident is refused.
        assert isinstance(outcome.error, TransitionNotAllowed)
        assert outcome.error.status == Status.CANCELLED
        assert stored.acknowledged_at is None
    elif writer == "change-severity":
        assert outcome.error is not None  # severity is frozen once cancelled
        assert stored.severity_id == 3
    elif writer == "update":
        # A cancelled incident's title no longer changes: decided on the committed state.
        assert isinstance(outcome.error, InvalidInput)
        assert list(outcome.error.errors) == ["title"]
        assert stored.title != "Renamed while locked"
    else:
        # Nor do its role assignments.
        assert isinstance(outcome.error, InvalidInput)
        assert list(outcome.error.errors) == ["role"]
        assert not stored.role_assignments.exists()
