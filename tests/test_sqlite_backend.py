"""The embedded setup's SQLite backend (config/sqlite): in the web server's processes a
transaction asks for the write lock every half millisecond instead of sleeping in SQLite's
backoff, up to the same timeout; elsewhere it is Django's backend unchanged."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import connection

from config.sqlite import base


def _wrapper(path, timeout: float = 5.0) -> base.DatabaseWrapper:
    settings_dict = {
        **connection.settings_dict,
        "ENGINE": "config.sqlite",
        "NAME": str(path),
        "OPTIONS": {"timeout": timeout, "transaction_mode": "IMMEDIATE"},
    }
    return base.DatabaseWrapper(settings_dict, alias="sqlite_backend_test")


@pytest.fixture
def polling(monkeypatch):
    monkeypatch.setattr(base, "POLL_FOR_WRITE_LOCK", True)


@pytest.fixture
def held(tmp_path, django_db_blocker):
    """Another process's writer: a database file of the test's own (not the test database),
    with its write lock taken."""
    path = tmp_path / "vigil.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    with django_db_blocker.unblock():
        yield path, holder
    holder.close()


def _begin_in_thread(path, timeout: float = 5.0) -> tuple[threading.Thread, dict]:
    """A web thread (its own connection, as Django gives each thread) begins a transaction."""
    outcome: dict = {}

    def begin() -> None:
        wrapper = _wrapper(path, timeout)
        try:
            wrapper.ensure_connection()
            wrapper._start_transaction_under_autocommit()
            outcome["at"] = time.monotonic()
            outcome["timeout"] = wrapper.connection.execute("PRAGMA busy_timeout").fetchone()[0]
            wrapper.connection.execute("INSERT INTO t VALUES (2)")
            wrapper.connection.execute("COMMIT")
        except Exception as exc:
            outcome["error"] = exc
        finally:
            wrapper.close()

    thread = threading.Thread(target=begin)
    thread.start()
    return thread, outcome


def assert_gave_up(outcome: dict) -> None:
    """The transaction failed as SQLite fails one that timed out waiting for the lock."""
    assert isinstance(outcome.get("error"), sqlite3.OperationalError)
    assert "locked" in str(outcome["error"])


def test_a_request_takes_the_lock_as_soon_as_it_is_released(polling, held):
    path, holder = held
    thread, outcome = _begin_in_thread(path)
    time.sleep(0.3)
    assert "at" not in outcome  # waiting for the lock
    holder.execute("COMMIT")
    released = time.monotonic()
    thread.join(5)
    assert "error" not in outcome, outcome
    # Polled every half millisecond, not in SQLite's backoff (up to 100 ms between tries).
    assert outcome["at"] - released < 0.1
    # The connection's busy timeout is restored for statements outside transactions.
    assert outcome["timeout"] == 5000
    assert [r[0] for r in holder.execute("SELECT x FROM t ORDER BY x")] == [1, 2]


def test_a_request_still_gives_up_after_the_timeout(polling, held):
    path, _ = held
    started = time.monotonic()
    thread, outcome = _begin_in_thread(path, timeout=0.3)
    thread.join(5)
    assert_gave_up(outcome)
    assert 0.3 <= time.monotonic() - started < 3


def test_outside_the_web_server_it_is_djangos_backend(monkeypatch, held):
    path, holder = held
    monkeypatch.setattr(base, "POLL_FOR_WRITE_LOCK", False)
    thread, outcome = _begin_in_thread(path)
    time.sleep(0.2)
    holder.execute("COMMIT")
    thread.join(5)
    assert "error" not in outcome and outcome["timeout"] == 5000


def test_the_web_server_turns_it_on(monkeypatch):
    from config import gunicorn
    from incidents import group_commit

    monkeypatch.setattr(base, "POLL_FOR_WRITE_LOCK", False)
    monkeypatch.setattr(base, "KEEP_QUERY_LOG", True)
    monkeypatch.setattr(group_commit, "ENABLED", False)
    gunicorn.post_worker_init(worker=None)
    assert base.POLL_FOR_WRITE_LOCK is True
    assert base.KEEP_QUERY_LOG is False
    assert group_commit.ENABLED is True


def test_the_servers_keep_no_query_log_with_debug_on(
    tmp_path, monkeypatch, settings, django_db_blocker
):
    """With DEBUG on, a web or Celery worker process runs its statements without Django's debug
    cursor (which quoted every statement's parameters with one more SQLite statement); the
    shell keeps ``connection.queries``, and so does a process whose ``django.db.backends``
    logger is at DEBUG."""
    import logging

    settings.DEBUG = True
    wrapper = _wrapper(tmp_path / "log.sqlite3")
    try:
        monkeypatch.setattr(base, "KEEP_QUERY_LOG", True)
        assert wrapper.queries_logged is True
        monkeypatch.setattr(base, "KEEP_QUERY_LOG", False)
        assert wrapper.queries_logged is False
        with django_db_blocker.unblock(), wrapper.cursor() as cursor:
            cursor.execute("SELECT %s", [1])
        assert wrapper.queries == []
        statements = logging.getLogger("django.db.backends")
        level = statements.level
        statements.setLevel(logging.DEBUG)
        try:
            assert wrapper.queries_logged is True
        finally:
            statements.setLevel(level)
        wrapper.force_debug_cursor = True  # as django_assert_num_queries does
        assert wrapper.queries_logged is True
        settings.DEBUG = False
        wrapper.force_debug_cursor = False
        monkeypatch.setattr(base, "KEEP_QUERY_LOG", True)
        assert wrapper.queries_logged is False
    finally:
        with django_db_blocker.unblock():
            wrapper.close()


def test_a_celery_worker_keeps_no_query_log(monkeypatch):
    from celery.signals import worker_init

    from config.celery import worker_warm_up

    monkeypatch.setattr(base, "KEEP_QUERY_LOG", True)
    monkeypatch.setattr("config.warmup.worker", lambda: None)
    assert worker_warm_up in [ref() for _, ref in worker_init.receivers]
    worker_warm_up(sender=None)
    assert base.KEEP_QUERY_LOG is False


def test_one_thread_of_a_process_polls_at_a_time(polling, held, monkeypatch):
    """Four requests wait for the lock another process holds: one of them asks SQLite at a
    time (the others wait on the process's lock, spending no CPU); all get it once it is
    released, one after another."""
    path, holder = held
    polls = {"now": 0, "most": 0, "total": 0}
    counting = threading.Lock()
    poll = base.DatabaseWrapper._poll_for_write_lock

    def counted(self, deadline, timeout):
        with counting:
            polls["now"] += 1
            polls["total"] += 1
            polls["most"] = max(polls["most"], polls["now"])
        try:
            return poll(self, deadline, timeout)
        finally:
            with counting:
                polls["now"] -= 1

    monkeypatch.setattr(base.DatabaseWrapper, "_poll_for_write_lock", counted)
    started = [_begin_in_thread(path) for _ in range(4)]
    time.sleep(0.3)
    assert polls == {"now": 1, "most": 1, "total": 1}
    holder.execute("COMMIT")
    for thread, _ in started:
        thread.join(5)
    assert [outcome.get("error") for _, outcome in started] == [None] * 4
    assert polls["most"] == 1 and polls["total"] == 4
    assert sorted(r[0] for r in holder.execute("SELECT x FROM t")) == [1, 2, 2, 2, 2]


def test_a_request_waiting_its_turn_gives_up_after_the_timeout(polling, held):
    path, _ = held
    first, _ = _begin_in_thread(path, timeout=1.0)
    time.sleep(0.05)
    started = time.monotonic()
    second, outcome = _begin_in_thread(path, timeout=0.3)
    second.join(5)
    assert_gave_up(outcome)
    assert 0.3 <= time.monotonic() - started < 1.0
    first.join(5)
