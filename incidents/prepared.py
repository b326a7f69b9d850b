"""Prepared statements on PostgreSQL for Vigil's hand-written hot statements.

Django binds parameters on the client: every statement reaches PostgreSQL as new text, which
it parses and plans again each time. For the few statements Vigil writes by hand and runs all
the time (a work row's claim and the record of its send, the incident list's page, the API's
permission check) that is a good part of their cost. :func:`prepared_cursor` gives a cursor
that binds on the server (the bookkeeping writes of :mod:`incidents.queue_statements` bind on
the server through the driver's cursor directly): psycopg prepares a statement once it has run
``VIGIL_DB_PREPARE_THRESHOLD`` times on the connection (the database ``OPTIONS``'
``prepare_threshold``), and PostgreSQL then runs its plan again. A ``ROLLBACK`` on the
connection makes psycopg forget (and deallocate) what it prepared; it is prepared again.

With the threshold off (``0``: a PgBouncer before 1.21 in transaction mode), while the
connection logs its queries (DEBUG, or a test counting them), on SQLite, or for statements
written with the ORM, it is Django's own cursor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

__all__ = ["prepared_cursor", "prepares"]


def prepares() -> bool:
    """Whether this connection prepares the statements of :func:`prepared_cursor`: not while
    it keeps a log of its queries (DEBUG, a test counting them), whose entries would show the
    server's ``$1`` placeholders instead of the values."""
    if connection.vendor != "postgresql" or connection.queries_logged:
        return False
    connection.ensure_connection()
    return connection.connection.prepare_threshold is not None


@contextmanager
def prepared_cursor() -> Iterator[Any]:
    """A cursor as ``connection.cursor()`` gives (queries logged and counted, errors as
    Django's), binding on the server where :func:`prepares`. Parameters are ``%s``; a
    statement's text must not change between runs for it to be prepared (keep values in the
    parameters)."""
    if not prepares():
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    # Django's private hook that wraps a driver cursor as ``connection.cursor()`` does.
    cursor = connection._prepare_cursor(psycopg.Cursor(connection.connection))
    with connection.wrap_database_errors, cursor:
        yield cursor
