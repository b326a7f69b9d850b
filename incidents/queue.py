"""Work rows: one claim / lease / retry / requeue mechanism for every table Vigil works through.

Three tables hold work that must happen once and must not be lost: incident events waiting for
their followers (:class:`incidents.models.IncidentEvent`), outbound notifications
(``escalation.Notification``) and inbound webhook deliveries
(:class:`incidents.models.InboundDelivery`). Each row is the record of its work, never the broker
message: a task lost with its worker, or a broker that refused it, loses nothing, because
:meth:`WorkQueue.requeue` finds the row and queues it again.

The life of a row::

    pending ──claim──▶ running ──done──▶ done
       ▲                  │
       └──── retry ◀──────┤ (transient error, attempts left: back to pending, later)
                          └──▶ failed (permanent error, or the last attempt)

Claiming. :meth:`WorkQueue.claim` is one statement, ``UPDATE … SET status = running,
claimed_at = now, attempts = attempts + 1 WHERE id = … AND <claimable> RETURNING …``, committed
on its own: the claim is a *lease*. Two workers claiming at once cannot both match (the second
UPDATE re-checks the condition on the row the first one changed). The work then runs outside
that transaction (a network call, a follower's own transaction). A result is recorded only
while this attempt's claim is current (:meth:`WorkQueue.complete` and :meth:`WorkQueue.fail`
compare ``claimed_at``), so a worker that outlived its lease cannot overwrite a newer attempt.
A row left running past the lease (its worker was killed) is claimable again.
:meth:`WorkQueue.claim_many` claims several rows in one statement under one stamp, and
:meth:`WorkQueue.complete_many` records them in one statement, each row still matched on that
stamp; :meth:`WorkQueue.release` gives back claimed rows that were not worked on.
:meth:`WorkQueue.claim_locked` is the short form for work that is itself one transaction (the
inbound deliveries): the row lock held to the end of the caller's transaction is the lease, and
the result is recorded in that same transaction (:meth:`WorkQueue.complete_locked_many`,
:meth:`WorkQueue.fail_locked`).

Publishing and requeueing. A row records when a task that will work on it was published
(``published_at``): :meth:`WorkQueue.mark_published` runs right after a *successful* publish, so
a publish that failed, or never happened (the process died between the commit and the publish),
leaves the row unmarked. :meth:`WorkQueue.requeue` re-publishes only what has no live task:
pending rows never published (past a short grace, ``requeue_after``), pending rows whose
publish lease ran out (``VIGIL_PUBLISH_LEASE_SECONDS``, longer than any wait in a queue: the
task is presumed lost with its broker), and rows running past the claim lease (the worker
died). A row whose task is still waiting in a queue, however long the queue, is left alone, so
a storm is not doubled by the sweep. It takes rows with ``SKIP LOCKED``, clears their stamp and
moves their next attempt to now before they are published, so two sweeps at once queue a row
once; the publish after commit stamps them again. A duplicate task is harmless all the same: a
row that is not claimable is skipped.

Durability. The claim, the record of a success and the publish stamp are bookkeeping whose
loss in a database crash only means the work is done again: a lost claim leaves the row
pending (its task runs it again), a lost success leaves it running until the lease (then it is
sent again, with the same idempotency key), a lost stamp makes the sweep publish a duplicate
task. On PostgreSQL they therefore commit with ``synchronous_commit`` off
(:func:`incidents.queue_statements.bookkeeping`), which saves the WAL flush (several
milliseconds) per statement; a crash loses at most the last fraction of a second of them, never
a row or a message. Everything else, the rows themselves included, commits durably.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import F, Q
from django.utils import timezone

from .queue_statements import (
    UNSYNCED,
    bookkeeping,
    bookkeeping_update,
    claim_sql,
    complete_many_sql,
    complete_sql,
    row_from_db,
    rows_from_db,
)

__all__ = ["Failure", "WorkQueue", "WorkStatus", "backoff_delay"]


class WorkStatus:
    """The four states every work table uses (each table keeps its own labels)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Failure:
    """What :meth:`WorkQueue.fail` recorded: ``retry`` (back to pending, ``delay`` seconds
    from now), ``failed`` (given up) or ``superseded`` (the claim was no longer current; nothing
    was written)."""

    outcome: str
    row: Any
    delay: float = 0.0


def backoff_delay(
    *, attempts: int, base: float, ceiling: float, retry_after: float | None = None
) -> float:
    """Seconds before the next attempt: exponential in the attempts so far, with jitter so an
    outage does not end in a synchronised burst, and never sooner than a provider's own
    ``Retry-After`` — up to the longest backoff."""
    top = min(ceiling, base * (2 ** max(0, attempts - 1)))
    delay = top / 2 + random.uniform(0, top / 2)
    if retry_after is not None and retry_after > delay:
        delay = min(float(retry_after), max(ceiling, delay))
    return delay


def _seconds(value: float | Callable[[], float]) -> float:
    return float(value() if callable(value) else value)


DEFAULT_PUBLISH_LEASE = 600.0


def default_publish_lease() -> float:
    """How long a published task is trusted to be waiting in its queue: past it, the requeue
    sweep presumes the message lost (a broker that lost its data) and publishes another."""
    return float(getattr(settings, "VIGIL_PUBLISH_LEASE_SECONDS", DEFAULT_PUBLISH_LEASE))


@dataclass(frozen=True)
class WorkQueue:
    """One table of work rows. The model has the fields ``status`` (holding the values given
    here), ``attempts``, ``next_attempt_at``, ``claimed_at`` and an error text (``error_field``).
    Tunings are numbers or callables read at call time (settings that tests override)."""

    model: type[models.Model]
    pending: str = WorkStatus.PENDING
    running: str = WorkStatus.RUNNING
    done: str = WorkStatus.DONE
    failed: str = WorkStatus.FAILED
    lease: float | Callable[[], float] = 120.0
    max_attempts: int | Callable[[], float] = 6
    backoff_base: float | Callable[[], float] = 10.0
    backoff_max: float | Callable[[], float] = 600.0
    requeue_after: float | Callable[[], float] = 60.0
    publish_lease: float | Callable[[], float] = default_publish_lease
    error_field: str = "last_error"

    # --- claiming ------------------------------------------------------------------------------

    def _claimable(self, now: datetime, *, due_only: bool) -> Q:
        pending = Q(status=self.pending)
        if due_only:
            pending &= Q(next_attempt_at__lte=now)
        stale = Q(status=self.running) & (
            Q(claimed_at__isnull=True)
            | Q(claimed_at__lte=now - timedelta(seconds=_seconds(self.lease)))
        )
        return pending | stale

    def claim(
        self,
        pk: int,
        *,
        now: datetime | None = None,
        due_only: bool = False,
        related: str | None = None,
    ) -> Any | None:
        """Take a lease on row ``pk`` in one statement committed on its own: pending (and due,
        with ``due_only``), or running with an expired lease → running, attempts + 1. Returns
        the row, or None when it is done, failed, held by a live lease, not yet due, or gone.

        ``related`` names a foreign key whose row the work will read (a notification's
        incident): on PostgreSQL it comes back with the claim, in the same round trip (the
        UPDATE as a common table expression joined to it); elsewhere, and for any other
        relation, a related row loads when first used."""
        rows = self._claim_rows([pk], now=now, due_only=due_only, related=related)
        return rows[0] if rows else None

    def claim_many(
        self, pks: list[int], *, now: datetime | None = None, related: str | None = None
    ) -> list[Any]:
        """:meth:`claim` for several rows in one statement, under one claim stamp: the rows of
        ``pks`` that were claimable, in the order given (the others are skipped). Every row
        returned shares ``claimed_at``, so :meth:`complete_many` records them in one statement
        too. The caller must finish them well within the lease (or :meth:`release` the rest):
        a claim that lapses makes its rows claimable by another worker."""
        if not pks:
            return []
        rows = self._claim_rows(list(pks), now=now, due_only=False, related=related)
        order = {pk: index for index, pk in enumerate(pks)}
        return sorted(rows, key=lambda row: order[row.pk])

    def _claim_rows(
        self, pks: list[int], *, now: datetime | None, due_only: bool, related: str | None
    ) -> list[Any]:
        now = now or timezone.now()
        when = connection.ops.adapt_datetimefield_value
        joined = related if related and connection.vendor == "postgresql" else None
        sql = claim_sql(self.model, due_only=due_only, related=joined, count=len(pks))
        params: list[Any] = [self.running, when(now), *pks, self.pending]
        if due_only:
            params.append(when(now))
        params += [self.running, when(now - timedelta(seconds=_seconds(self.lease)))]
        rows, _ = bookkeeping(sql, params, returning=True)
        if joined is None:
            return [row_from_db(self.model, values) for values in rows]
        target = self.model._meta.get_field(joined).related_model
        claimed = []
        for values in rows:
            # A null foreign key joins nothing: every joined column is NULL, its key too.
            row, related_row = rows_from_db(values, self.model, target)
            setattr(row, joined, related_row)
            claimed.append(row)
        return claimed

    def claim_locked(self, queryset: models.QuerySet, *, now: datetime | None = None) -> Any | None:
        """Inside the caller's transaction: lock the first claimable row of ``queryset`` that no
        other transaction holds (``SKIP LOCKED``) and count the attempt. The lock, held until the
        caller's transaction ends, is the lease; the caller records the result in that same
        transaction (:meth:`complete_locked_many`, :meth:`fail_locked`)."""
        now = now or timezone.now()
        row = (
            queryset.select_for_update(skip_locked=True, of=("self",))
            .filter(self._claimable(now, due_only=False))
            .first()
        )
        if row is None:
            return None
        row.attempts += 1
        return row

    # --- results -------------------------------------------------------------------------------

    def _done_assignments(self, fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """``column = %s`` for the done status, an empty error and ``fields``, with their
        values prepared by their fields."""
        meta = self.model._meta
        quote = connection.ops.quote_name
        assignments, params = [], []
        for name, value in {"status": self.done, self.error_field: "", **fields}.items():
            field = meta.get_field(name)
            assignments.append(f"{quote(field.column)} = %s")
            params.append(field.get_db_prep_save(value, connection))
        return assignments, params

    def complete(self, row: Any, **fields: Any) -> bool:
        """Mark a claimed row done, with ``fields`` (e.g. a provider's message id). One
        statement, ``UPDATE … WHERE id = … AND claimed_at = <this claim>``: a success stands
        even if this attempt's lease lapsed meanwhile (the work is done; a sweep that put the
        row back to pending finds it done), but a stale claim whose row another attempt took
        over records nothing, and a row already done is never rewritten. Returns whether it
        changed the row."""
        meta = self.model._meta
        sql = complete_sql(self.model, error_field=self.error_field, names=tuple(fields))
        params: list[Any] = [self.done, ""]
        for name, value in fields.items():
            params.append(meta.get_field(name).get_db_prep_save(value, connection))
        params += [
            row.pk,
            connection.ops.adapt_datetimefield_value(row.claimed_at),
            self.running,
            self.pending,
        ]
        return bool(bookkeeping(sql, params)[1])

    def complete_many(self, fields: dict[int, dict], *, claim: datetime) -> int:
        """:meth:`complete` for rows claimed together (:meth:`claim_many`, one ``claimed_at``),
        in one statement: the row of each key of ``fields`` gets its own values (every row the
        same field names). The same rules as :meth:`complete`: a row another attempt took over,
        or one already done, is not written. Returns how many rows it changed."""
        if not fields:
            return 0
        names = list(next(iter(fields.values())))
        meta = self.model._meta
        prepared = {name: meta.get_field(name) for name in names}
        params: list[Any] = [self.done, ""]
        for name, field in prepared.items():
            for pk, row in fields.items():
                params += [pk, field.get_db_prep_save(row[name], connection)]
        params += [
            *fields,
            connection.ops.adapt_datetimefield_value(claim),
            self.running,
            self.pending,
        ]
        sql = complete_many_sql(
            self.model, error_field=self.error_field, names=names, count=len(fields)
        )
        return bookkeeping(sql, params)[1]

    def release(self, pks: list[int], *, claim: datetime) -> int:
        """Give back rows claimed with :meth:`claim_many` that were not worked on (the batch
        ran short of its lease, or an error stopped it): pending again, due now, the attempt
        not counted. Only rows still held by ``claim``. One bookkeeping statement."""
        if not pks:
            return 0
        rows = self.model._default_manager.filter(pk__in=pks, claimed_at=claim, status=self.running)
        return bookkeeping_update(
            rows,
            {
                "status": self.pending,
                "claimed_at": None,
                "attempts": F("attempts") - 1,
                "next_attempt_at": timezone.now(),
            },
        )

    def complete_locked_many(self, rows: list[Any], **fields: Any) -> None:
        """Mark rows locked in the caller's transaction (:meth:`claim_locked`, or a query of
        the caller's with ``SKIP LOCKED``) done, the attempt counted: one statement. The
        attempt is counted from the database's value, not the loaded row's."""
        if not rows:
            return
        meta = self.model._meta
        quote = connection.ops.quote_name
        attempts = quote(meta.get_field("attempts").column)
        assignments, params = self._done_assignments(fields)
        assignments.append(f"{attempts} = {attempts} + 1")
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
                f"WHERE {quote(meta.pk.column)} IN ({', '.join(['%s'] * len(rows))})",
                [*params, *(row.pk for row in rows)],
            )

    def fail(
        self,
        row: Any,
        *,
        claim: datetime | None,
        error: str,
        permanent: bool = False,
        retry_after: float | None = None,
        now: datetime | None = None,
        related: tuple[str, ...] = (),
    ) -> Failure:
        """Record a failed attempt of a claimed row under a fresh lock: back to pending with
        backoff, or failed when ``permanent`` or out of attempts. Nothing is written if the
        row's claim is no longer ``claim`` (another attempt took over). The caller adds its
        side effects (a timeline entry, a republish after commit) in the same transaction, so
        call this inside ``transaction.atomic()``."""
        rows = self.model.objects.select_for_update(of=("self",))
        if related:
            rows = rows.select_related(*related)
        locked = rows.get(pk=row.pk)
        if locked.status != self.running or locked.claimed_at != claim:
            return Failure("superseded", locked)
        return self._failed(
            locked, error=error, permanent=permanent, retry_after=retry_after, now=now
        )

    def fail_locked(
        self, row: Any, *, error: str, permanent: bool = False, now: datetime | None = None
    ) -> Failure:
        """Record a failed attempt of a row claimed with :meth:`claim_locked`, in the caller's
        transaction (after the work's own savepoint was rolled back)."""
        return self._failed(row, error=error, permanent=permanent, retry_after=None, now=now)

    def _failed(
        self,
        row: Any,
        *,
        error: str,
        permanent: bool,
        retry_after: float | None,
        now: datetime | None,
    ) -> Failure:
        now = now or timezone.now()
        setattr(row, self.error_field, error[:4000])
        if permanent or row.attempts >= int(_seconds(self.max_attempts)):
            row.status = self.failed
            row.save(update_fields=["status", "attempts", self.error_field])
            return Failure("failed", row)
        delay = self.delay(attempts=row.attempts, retry_after=retry_after)
        row.status = self.pending
        row.next_attempt_at = now + timedelta(seconds=delay)
        # The retry needs a task of its own: unmarked until the caller's publish succeeds.
        row.published_at = None
        row.save(
            update_fields=[
                "status",
                "attempts",
                self.error_field,
                "next_attempt_at",
                "published_at",
            ]
        )
        return Failure("retry", row, delay)

    def delay(self, *, attempts: int, retry_after: float | None = None) -> float:
        return backoff_delay(
            attempts=attempts,
            base=_seconds(self.backoff_base),
            ceiling=_seconds(self.backoff_max),
            retry_after=retry_after,
        )

    def retry_now(self, row: Any, *, fresh: bool) -> bool:
        """Put a failed or waiting row back to pending, due now (an operator's "retry"); with
        ``fresh`` a failed row gets a new attempt budget. Runs in the caller's transaction on a
        row it has locked. Returns False (changing nothing) for a row done or being worked."""
        if row.status in (self.done, self.running):
            return False
        if fresh and row.status == self.failed:
            row.attempts = 0
        row.status = self.pending
        row.next_attempt_at = timezone.now()
        row.published_at = None
        row.save(update_fields=["status", "attempts", "next_attempt_at", "published_at"])
        return True

    # --- publishing and recovery --------------------------------------------------------------

    def mark_published(
        self, ids: list[int] | None = None, *, now: datetime | None = None, **filters: Any
    ) -> int:
        """Record that a task that will work on these rows was just published: the rows
        ``ids``, or those matching ``filters`` (e.g. an incident's pending events). Call it
        right after a publish that succeeded, never before: a failed publish must leave its
        rows unmarked for the sweep. One statement (a bookkeeping write, see the module
        docstring). Returns how many rows it stamped."""
        if ids is not None and not ids:
            return 0
        stamp = now or timezone.now()
        if ids is not None and not filters:
            # The common case, written without the ORM's query building.
            sql, params = self._by_ids("{published_at} = %s", "", ids)
            return bookkeeping(sql, [connection.ops.adapt_datetimefield_value(stamp), *params])[1]
        rows = self.model._default_manager.all()
        if ids is not None:
            rows = rows.filter(pk__in=ids)
        if filters:
            rows = rows.filter(**filters)
        return bookkeeping_update(rows, {"published_at": stamp})

    def mark_taken(self, ids: list[int], *, now: datetime | None = None) -> int:
        """Clear the publish stamp of pending rows a task has taken up and is about to work on
        in a transaction of its own that only marks them done at its end: if its worker dies
        meanwhile (the transaction rolled back, the message not acknowledged), the sweep
        queues them again after ``requeue_after``, as rows whose publish was lost, instead of
        after the publish lease. Their next attempt becomes ``now``, so the sweep leaves them
        alone for ``requeue_after`` while the task works through them. One bookkeeping
        statement. Returns how many it cleared."""
        if not ids:
            return 0
        now = now or timezone.now()
        # Only rows due: a retry waiting for its backoff keeps its time.
        sql, params = self._by_ids(
            "{published_at} = NULL, {next_attempt_at} = %s",
            " AND {status} = %s AND {published_at} IS NOT NULL AND {next_attempt_at} <= %s",
            ids,
        )
        at = connection.ops.adapt_datetimefield_value(now)
        return bookkeeping(sql, [at, *params, self.pending, at])[1]

    def _by_ids(self, assignments: str, conditions: str, ids: list[int]) -> tuple[str, list]:
        """``UPDATE <table> SET <assignments> WHERE id IN (<ids>)<conditions>``, the field names
        in braces replaced by their quoted columns; returns it and the ids as parameters (the
        placeholders of ``assignments`` come before them, those of ``conditions`` after)."""
        meta = self.model._meta
        quote = connection.ops.quote_name
        columns = {
            name: quote(meta.get_field(name).column)
            for name in ("status", "published_at", "next_attempt_at")
        }
        sql = (
            f"UPDATE {quote(meta.db_table)} SET {assignments.format(**columns)} "
            f"WHERE {UNSYNCED}{quote(meta.pk.column)} IN ({', '.join(['%s'] * len(ids))})"
            f"{conditions.format(**columns)}"
        )
        return sql, list(ids)

    def requeue(
        self,
        *,
        now: datetime | None = None,
        batch: int = 500,
        order: str = "next_attempt_at",
        grace: float | None = None,
    ) -> list[int]:
        """The ids of rows whose work has no live task, for the caller to publish after commit
        (and :meth:`mark_published` once published): pending rows never published, due
        ``requeue_after`` (or ``grace``) seconds ago; pending rows published
        ``publish_lease`` seconds ago and due as long (the message is presumed lost); rows
        running past the claim lease (set back to pending, their attempt counted). A pending
        row whose task is waiting in a queue is not returned. Claims with ``SKIP LOCKED``,
        clears the stamp and moves each row's next attempt to now, so two sweeps at once
        return a row once. Call inside ``transaction.atomic()`` and publish with
        ``on_commit``."""
        now = now or timezone.now()
        wait = now - timedelta(seconds=_seconds(self.requeue_after if grace is None else grace))
        lapsed = now - timedelta(seconds=_seconds(self.publish_lease))
        lease = timedelta(seconds=_seconds(self.lease))
        pending = list(
            self.model.objects.select_for_update(skip_locked=True)
            .filter(
                Q(published_at__isnull=True, next_attempt_at__lte=wait)
                | Q(published_at__lte=lapsed, next_attempt_at__lte=lapsed),
                status=self.pending,
            )
            .order_by(order, "pk")
            .values_list("pk", flat=True)[:batch]
        )
        stuck = list(
            self.model.objects.select_for_update(skip_locked=True)
            .filter(status=self.running, claimed_at__lte=now - lease)
            .order_by("claimed_at", "pk")
            .values_list("pk", flat=True)[:batch]
        )
        if pending:
            self.model.objects.filter(pk__in=pending).update(next_attempt_at=now, published_at=None)
        if stuck:
            self.model.objects.filter(pk__in=stuck).update(
                status=self.pending,
                next_attempt_at=now,
                published_at=None,
                **{self.error_field: "Interrupted (worker lost while working); re-queued."},
            )
        return pending + stuck
