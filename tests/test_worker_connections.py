"""A worker's database connection around its tasks (config/celery.py): kept between tasks,
closed when broken, and pinged before a task's first query at most once a second."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from celery.signals import task_postrun, task_prerun
from django.db import connections

import config.celery as worker_setup
from incidents.models import Incident

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pings(monkeypatch):
    """Health checks on (as on PostgreSQL), counted."""
    conn = connections["default"]
    conn.ensure_connection()
    # The connection may have been opened by an earlier test of this process nearly
    # CONN_MAX_AGE ago: its age must not close it (and a new one open unpinged) mid-test.
    monkeypatch.setattr(conn, "close_at", None)
    monkeypatch.setattr(worker_setup, "_pings", worker_setup._Pings())
    monkeypatch.setattr(conn, "health_check_enabled", True)
    calls = []
    real = conn.is_usable

    def is_usable():
        calls.append(1)
        return real()

    monkeypatch.setattr(conn, "is_usable", is_usable)
    return calls


class _Task:
    """Stands in for a Celery task as the signals see it (hashable, with a request)."""

    def __init__(self, eager: bool) -> None:
        self.request = SimpleNamespace(is_eager=eager)


def run_task(*, eager: bool = False, query: bool = True) -> None:
    """What a worker does around one task: the signals, and the task's own query."""
    task = _Task(eager)
    task_prerun.send(sender=task, task_id="t", task=task, args=(), kwargs={})
    if query:
        Incident.objects.exists()
    task_postrun.send(
        sender=task, task_id="t", task=task, args=(), kwargs={}, retval=None, state="SUCCESS"
    )


def test_a_burst_of_tasks_pings_the_connection_once(pings, monkeypatch):
    monkeypatch.setattr(worker_setup, "PING_INTERVAL_SECONDS", 60.0)
    for _ in range(5):
        run_task()
    assert len(pings) == 1


def test_the_connection_is_pinged_again_once_the_interval_has_passed(pings, monkeypatch):
    monkeypatch.setattr(worker_setup, "PING_INTERVAL_SECONDS", 0.0)
    for _ in range(3):
        run_task()
    assert len(pings) == 3


def test_a_task_without_queries_does_not_keep_the_last_ping_fresh(pings, monkeypatch):
    monkeypatch.setattr(worker_setup, "PING_INTERVAL_SECONDS", 60.0)
    run_task()
    first = worker_setup._pings.pinged_at["default"]
    run_task(query=False)
    run_task()
    # Counted from the start of the task that pinged, not moved on by the tasks after it.
    assert worker_setup._pings.pinged_at["default"] == first
    assert len(pings) == 1


def test_each_worker_thread_keeps_its_own_pings(pings, monkeypatch):
    monkeypatch.setattr(worker_setup, "PING_INTERVAL_SECONDS", 60.0)
    run_task()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(dict(worker_setup._pings.pinged_at)))
    thread.start()
    thread.join()
    # Another thread has other connections: this thread's ping says nothing about them.
    assert seen == [{}]
    assert "default" in worker_setup._pings.pinged_at


def test_an_eager_task_leaves_the_connection_alone(pings):
    # An eager task runs inside the caller's request or test: its connection is the caller's.
    connections["default"].health_check_done = False
    run_task(eager=True)
    assert worker_setup._pings.pinged_at == {}
    assert len(pings) == 1
