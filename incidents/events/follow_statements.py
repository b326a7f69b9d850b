"""The statements of following an incident's events: those PostgreSQL runs as one where other
databases need two (the due events read together with the first one taken up, and the
handlers' records written together with the event marked done: data-modifying common table
expressions), and the event locked with its incident, built once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache

from django.db import connection

from ..models import Incident, SeverityLevel
from ..models.events import EventHandling, EventStatus, HandlingStatus, IncidentEvent
from ..queue_statements import UNSYNCED, bookkeeping, columns_sql, rows_from_db

# How many of an incident's events one call follows at most.
FOLLOW_BATCH = 200


def due_events(incident_id: int, *, now: datetime) -> tuple[list[int], bool]:
    """The ids of the incident's pending and running events, oldest first (at most
    ``FOLLOW_BATCH``), and whether the first one was taken up with them
    (its publish stamp cleared, as ``EVENT_QUEUE.mark_taken`` does): on PostgreSQL in the same
    statement, elsewhere not (the caller takes it up)."""
    if connection.vendor != "postgresql":
        ids = list(
            IncidentEvent.objects.filter(
                incident_id=incident_id, status__in=[EventStatus.PENDING, EventStatus.RUNNING]
            )
            .order_by("id")
            .values_list("id", flat=True)[:FOLLOW_BATCH]
        )
        return ids, False
    rows, _ = bookkeeping(
        _due_sql(),
        [
            incident_id,
            EventStatus.PENDING,
            EventStatus.RUNNING,
            FOLLOW_BATCH,
            now,
            EventStatus.PENDING,
            now,
        ],
        returning=True,
    )
    return [row[0] for row in rows], True


@cache
def _due_sql() -> str:
    q = connection.ops.quote_name
    table = q(IncidentEvent._meta.db_table)
    col = {
        f.name: q(f.column)
        for f in IncidentEvent._meta.concrete_fields
        if f.name in ("id", "incident", "status", "published_at", "next_attempt_at")
    }
    # The first event's publish stamp cleared as EVENT_QUEUE.mark_taken clears it: pending,
    # published and due only.
    return (
        f"WITH due AS (SELECT {col['id']} FROM {table} WHERE {col['incident']} = %s "
        f"AND {col['status']} IN (%s, %s) ORDER BY {col['id']} LIMIT %s), "
        f"taken AS (UPDATE {table} SET {col['published_at']} = NULL, "
        f"{col['next_attempt_at']} = %s WHERE {UNSYNCED}{col['id']} = "
        f"(SELECT min({col['id']}) FROM due) "
        f"AND {col['status']} = %s AND {col['published_at']} IS NOT NULL "
        f"AND {col['next_attempt_at']} <= %s) "
        f"SELECT {col['id']} FROM due ORDER BY {col['id']}"
    )


def event_done(pk: int, *, handlers: Sequence[str], finished: datetime) -> None:
    """Record the event's handlers as done, each at its first attempt, and the event done: on
    PostgreSQL one statement, elsewhere two."""
    done = {
        "status": EventStatus.DONE,
        "attempts": 1,
        "handled_at": finished,
        "last_error": "",
    }
    if connection.vendor != "postgresql" or not handlers:
        EventHandling.objects.bulk_create(
            [
                EventHandling(
                    event_id=pk,
                    handler=name,
                    status=HandlingStatus.DONE,
                    attempts=1,
                    finished_at=finished,
                )
                for name in handlers
            ]
        )
        IncidentEvent.objects.filter(pk=pk).update(**done)
        return
    params: list = []
    for name in handlers:
        params += [pk, name, HandlingStatus.DONE, 1, "", None, finished]
    params += [done["status"], done["attempts"], finished, done["last_error"], pk]
    with connection.cursor() as cursor:
        cursor.execute(_done_sql(len(handlers)), params)


@cache
def _done_sql(count: int) -> str:
    q = connection.ops.quote_name
    handling = {
        name: q(EventHandling._meta.get_field(name).column)
        for name in (
            "event",
            "handler",
            "status",
            "attempts",
            "last_error",
            "next_attempt_at",
            "finished_at",
        )
    }
    event = {
        name: q(IncidentEvent._meta.get_field(name).column)
        for name in ("id", "status", "attempts", "handled_at", "last_error")
    }
    row = f"({', '.join(['%s'] * len(handling))})"
    return (
        f"WITH handled AS (INSERT INTO {q(EventHandling._meta.db_table)} "
        f"({', '.join(handling.values())}) VALUES {', '.join([row] * count)}) "
        f"UPDATE {q(IncidentEvent._meta.db_table)} SET {event['status']} = %s, "
        f"{event['attempts']} = %s, {event['handled_at']} = %s, {event['last_error']} = %s "
        f"WHERE {event['id']} = %s"
    )


def event_lock_fresh(pk: int, *, now: datetime) -> IncidentEvent | None:
    """Event ``pk`` locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's transaction holds
    the database) with its incident and the incident's severity, when it is pending, never
    attempted and due; None otherwise, or when another transaction holds it. One statement,
    built once."""
    with connection.cursor() as cursor:
        cursor.execute(
            _event_lock_sql(),
            [pk, EventStatus.PENDING, connection.ops.adapt_datetimefield_value(now)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    event, incident, severity = rows_from_db(row, IncidentEvent, Incident, SeverityLevel)
    incident.severity = severity
    event.incident = incident
    return event


@cache
def _event_lock_sql() -> str:
    q = connection.ops.quote_name
    event = {
        name: q(IncidentEvent._meta.get_field(name).column)
        for name in ("id", "incident", "status", "attempts", "next_attempt_at")
    }
    severity = Incident._meta.get_field("severity")
    lock = " FOR UPDATE OF e SKIP LOCKED" if connection.vendor == "postgresql" else ""
    return (
        f"SELECT {columns_sql(IncidentEvent, 'e')}, {columns_sql(Incident, 'i')}, "
        f"{columns_sql(SeverityLevel, 's')} FROM {q(IncidentEvent._meta.db_table)} e "
        f"INNER JOIN {q(Incident._meta.db_table)} i "
        f"ON i.{q(Incident._meta.pk.column)} = e.{event['incident']} "
        f"INNER JOIN {q(SeverityLevel._meta.db_table)} s "
        f"ON s.{q(severity.target_field.column)} = i.{q(severity.column)} "
        f"WHERE e.{event['id']} = %s AND e.{event['status']} = %s AND e.{event['attempts']} = 0 "
        f"AND e.{event['next_attempt_at']} <= %s{lock}"
    )
