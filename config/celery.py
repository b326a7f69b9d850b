"""The Celery application: configured from Django settings (``CELERY_*``), tasks found per app."""

import os
import threading
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("vigil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A worker's connection is pinged (Django's health check, one ``SELECT 1`` round trip) before
# the first query of a task at most once in this many seconds. In a burst of short tasks (one
# page each) the ping was a third of a delivery's round trips. A connection that broke within
# that second fails the task's first query instead: the connection is closed after the task,
# and a task with DATABASE_RETRY (the deliveries) is retried by Celery.
PING_INTERVAL_SECONDS = 1.0


class _Pings(threading.local):
    """Per worker thread, as Django's connections are (a threads or gevent pool)."""

    def __init__(self) -> None:
        # Per connection alias: when its current connection was last pinged or opened.
        self.pinged_at: dict[str, float] = {}
        # Aliases whose ping this task skipped (health_check_done set here, not by a ping).
        self.skipped: set[str] = set()
        # When the running task started: a ping during it is counted from then, the earliest
        # it can have been.
        self.started_at = float("-inf")


_pings = _Pings()


def _is_eager(sender) -> bool:
    return sender is not None and getattr(sender.request, "is_eager", False)


@task_prerun.connect
def _database_connections_before(sender=None, **kwargs) -> None:
    """Before each task, what Django does before each request: close a connection that is
    broken, had errors, or outlived CONN_MAX_AGE (CELERY_DB_REUSE_MAX keeps Celery's fixup from
    closing every connection every time) — and skip the ping of one pinged under a second ago."""
    if _is_eager(sender):
        return
    from django.db import close_old_connections, connections

    close_old_connections()
    state = _pings
    now = state.started_at = time.monotonic()
    state.skipped.clear()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            state.pinged_at.pop(conn.alias, None)
        elif now - state.pinged_at.get(conn.alias, float("-inf")) < PING_INTERVAL_SECONDS:
            conn.health_check_done = True
            state.skipped.add(conn.alias)


@task_postrun.connect
def _database_connections_after(sender=None, **kwargs) -> None:
    """After each task: note the connections this task pinged or opened, then close a broken
    or obsolete one, as Django does after each request."""
    if _is_eager(sender):
        return
    from django.db import close_old_connections, connections

    state = _pings
    for conn in connections.all(initialized_only=True):
        pinged = conn.health_check_done and conn.alias not in state.skipped
        if conn.connection is not None and pinged:
            # Pinged (or opened) during this task.
            state.pinged_at[conn.alias] = state.started_at
    state.skipped.clear()
    # A connection this closes is forgotten before the next task (its alias has no connection).
    close_old_connections()


@worker_init.connect
def worker_warm_up(**kwargs) -> None:
    """Before the pool starts: import what the first tasks would (config.warmup), once, in the
    main process whose modules the prefork pool's processes inherit. On the embedded SQLite
    database the worker keeps no log of its queries with DEBUG on (config/sqlite)."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from config import warmup
    from config.sqlite import base

    base.KEEP_QUERY_LOG = False
    warmup.worker()
