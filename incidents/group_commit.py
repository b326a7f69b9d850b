"""Group commit on SQLite: the one-statement writes of the threads of one process, in one
transaction.

On the embedded setup every accepted webhook is one INSERT, and SQLite has a single writer:
during an alert storm each request's transaction waited for the write lock behind the
workers' (and the other requests'), then held it for its one row. Here the threads of a web
process that write at the same moment share a transaction: the first becomes the leader and
asks for the lock (``BEGIN IMMEDIATE``, polling as the embedded setup's SQLite backend does in
a web process); once it
holds it, it runs every statement queued by then, its own and the other threads', each as
its own statement, commits once and hands each thread its statement's first row. Threads
that queue while a leader writes wait for it to finish; the next of them leads.

A statement that fails rolls the transaction back; every thread of the group then runs its
statement again alone, so one bad row fails only its own request. Waiting for the lock and
its timeout are those of a transaction of its own.

:data:`ENABLED` is set by the web server's worker processes (``config/gunicorn.py``); elsewhere
(Celery workers, ``manage.py``, tests unless they set it) each write is a transaction of its
own, as it always was on PostgreSQL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

__all__ = ["ENABLED", "GroupCommit"]

# Set in the web server's worker processes; used there on SQLite only.
ENABLED = False


@dataclass(eq=False)
class _Write:
    sql: str
    params: list[Any]
    row: Any = None
    error: BaseException | None = None
    alone: bool = False
    done: bool = False


class GroupCommit:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[_Write] = []
        self._leading = False
        # How many transactions wrote how many statements (the tests read them).
        self.groups = 0
        self.statements = 0

    def fetchone(self, sql: str, params: list[Any]) -> Any:
        """Run ``sql`` (one statement that returns a row, such as ``INSERT … RETURNING id``)
        committed, in a transaction shared with the other threads of this process writing at
        the same moment; returns its row. Outside any transaction only."""
        if connection.in_atomic_block:
            raise RuntimeError("GroupCommit runs each statement in a transaction of its own")
        write = _Write(sql, params)
        with self._cond:
            self._queue.append(write)
            while not write.done and self._leading:
                self._cond.wait()
            if not write.done:
                self._leading = True
        if not write.done:
            self._lead(write)
        if write.alone:
            return _alone(sql, params)
        if write.error is not None:
            raise write.error
        return write.row

    def _transaction(self) -> Any:
        """The group's transaction: ``BEGIN IMMEDIATE`` takes the write lock on entering."""
        return transaction.atomic(savepoint=False)

    def _lead(self, mine: _Write) -> None:
        group: list[_Write] = []
        try:
            with self._transaction():
                # The lock is held from here: every statement queued meanwhile goes with ours.
                with self._cond:
                    group, self._queue = self._queue, []
                with connection.cursor() as cursor:
                    for write in group:
                        cursor.execute(write.sql, write.params)
                        write.row = cursor.fetchone()
            self.groups += 1
            self.statements += len(group)
        except BaseException as exc:
            if not group:
                # No lock (a timeout): this statement fails as its own transaction would
                # have; the others queued wait for the next leader.
                with self._cond:
                    self._queue.remove(mine)
                mine.error = exc
                group = [mine]
            elif len(group) == 1:
                group[0].error = exc
            else:
                for write in group:
                    write.row, write.alone = None, True
        finally:
            with self._cond:
                for write in group:
                    write.done = True
                self._leading = False
                self._cond.notify_all()


def _alone(sql: str, params: list[Any]) -> Any:
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
