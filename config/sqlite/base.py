"""Django's SQLite backend, with a fairer wait for the write lock in the web process.

The embedded setup (``make run``, ``make serve``) runs web, worker and beat processes on one
SQLite file, which has a single writer at a time. A writer that finds the lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, ... up to 100 ms between tries; the workers
start their next transaction the moment they commit the last one, so during an alert storm a
request's wake-up rarely lands in a gap, and accepting webhooks slowed to a tenth of what
PostgreSQL takes. In a process that serves requests (:data:`POLL_FOR_WRITE_LOCK`, set by the
web server's worker processes, ``config/gunicorn.py``) a transaction asks for the lock every
:data:`POLL_SECONDS` instead, up to the same timeout: a request waits for the transaction in
progress, not for a queue of them. Workers keep SQLite's own backoff.

One thread of a process polls at a time; the process's other threads wait for their turn on a
lock of the process, without spending CPU (a try costs about as much as a small INSERT: eight
threads polling during an alert storm took half of the web processes' CPU). Only one of them
could take the write lock anyway.

The servers' processes (web and Celery workers: :data:`KEEP_QUERY_LOG` off) keep no log of
their queries with DEBUG on, as ``manage.py shell`` still does (``connection.queries``). Nobody
reads it there, and with DEBUG on (``make run``) Django quoted every statement's parameters for
it with one more SQLite statement, a seventh of the worker's CPU in an alert storm. Setting the
``django.db.backends`` logger to DEBUG keeps the log (and logs the statements).
"""

from __future__ import annotations

import logging
import threading
import time

from django.db.backends.sqlite3 import base

# Set in the web server's worker processes.
POLL_FOR_WRITE_LOCK = False
POLL_SECONDS = 0.0005
_polling = threading.Lock()
# Off in the web server's and the Celery workers' processes.
KEEP_QUERY_LOG = True
_statements = logging.getLogger("django.db.backends")


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def queries_logged(self) -> bool:
        if self.force_debug_cursor:
            return True
        return super().queries_logged and (
            KEEP_QUERY_LOG or _statements.isEnabledFor(logging.DEBUG)
        )

    def _start_transaction_under_autocommit(self) -> None:
        if not POLL_FOR_WRITE_LOCK or self.transaction_mode != "IMMEDIATE":
            super()._start_transaction_under_autocommit()
            return
        timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
        deadline = time.monotonic() + timeout
        if not _polling.acquire(timeout=timeout):
            raise base.Database.OperationalError("database is locked")
        try:
            self._poll_for_write_lock(deadline, timeout)
        finally:
            _polling.release()

    def _poll_for_write_lock(self, deadline: float, timeout: float) -> None:
        cursor = self.connection.cursor()
        # Fail at once when the lock is taken, and try again shortly, instead of sleeping in
        # SQLite's busy handler.
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    return
                except base.Database.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(POLL_SECONDS)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            cursor.close()
