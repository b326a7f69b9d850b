"""The Celery application: configured from Django settings (``CELERY_*``), tasks found per app."""

import os
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun

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
# Per connection alias: when its current connection was last pinged or opened.
_pinged_at: dict[str, float] = {}
# Aliases whose ping this task skipped (their health_check_done was set here, not by a ping).
_skipped: set[str] = set()
# When the running task started: a ping during it is counted from then, the earliest it can be.
_started_at = float("-inf")


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

    global _started_at
    close_old_connections()
    now = _started_at = time.monotonic()
    _skipped.clear()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            _pinged_at.pop(conn.alias, None)
        elif now - _pinged_at.get(conn.alias, float("-inf")) < PING_INTERVAL_SECONDS:
            conn.health_check_done = True
            _skipped.add(conn.alias)


@task_postrun.connect
def _database_connections_after(sender=None, **kwargs) -> None:
    """After each task: note the connections this task pinged or opened, then close a broken
    or obsolete one, as Django does after each request."""
    if _is_eager(sender):
        return
    from django.db import close_old_connections, connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.health_check_done and conn.alias not in _skipped:
            # Pinged (or opened) during this task.
            _pinged_at[conn.alias] = _started_at
    _skipped.clear()
    close_old_connections()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            _pinged_at.pop(conn.alias, None)
