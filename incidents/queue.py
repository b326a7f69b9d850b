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

Claiming. :meth:`WorkQueue.claim` locks the row (``FOR UPDATE``, only the row), moves it to
running with ``claimed_at`` = now and ``attempts`` + 1, and commits: the claim is a *lease*. The
work then runs outside that transaction (a network call, a follower's own transaction). A
result is recorded only while this attempt's claim is current (:meth:`WorkQueue.fail` compares
``claimed_at``), so a worker that outlived its lease cannot overwrite a newer attempt. A row
left running past the lease (its worker was killed) is claimable again.
:meth:`WorkQueue.claim_locked` is the short form for work that is itself one transaction (the
inbound deliveries): the row lock held to the end of the caller's transaction is the lease.

Requeueing. :meth:`WorkQueue.requeue` selects rows pending past their next attempt (plus a
grace period, so a retry the broker already holds is not doubled) and rows running past the
lease, with ``SKIP LOCKED``, and pushes their next attempt out before they are published, so two
sweeps at once queue a row once. Duplicate tasks are harmless: a row that is not claimable is
skipped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

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
        related: tuple[str, ...] = (),
    ) -> Any | None:
        """Take a lease on row ``pk`` in a transaction of its own: pending (and due, with
        ``due_only``), or running with an expired lease → running, attempts + 1. Returns the
        row, or None when it is done, failed, held by a live lease, not yet due, or gone."""
        now = now or timezone.now()
        with transaction.atomic():
            rows = self.model.objects.select_for_update(of=("self",))
            if related:
                rows = rows.select_related(*related)
            row = rows.filter(self._claimable(now, due_only=due_only), pk=pk).first()
            if row is None:
                return None
            self._take(row, now)
            return row

    def claim_locked(self, queryset: models.QuerySet, *, now: datetime | None = None) -> Any | None:
        """Inside the caller's transaction: lock the first claimable row of ``queryset`` that no
        other transaction holds (``SKIP LOCKED``) and count the attempt. The lock, held until the
        caller's transaction ends, is the lease; the caller records the result in that same
        transaction (:meth:`complete_locked`, :meth:`fail_locked`)."""
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

    def _take(self, row: Any, now: datetime) -> None:
        row.status = self.running
        row.attempts += 1
        row.claimed_at = now
        row.save(update_fields=["status", "attempts", "claimed_at"])

    # --- results -------------------------------------------------------------------------------

    def complete(self, row: Any, **fields: Any) -> bool:
        """Mark a claimed row done, with ``fields`` (e.g. a provider's message id). One
        conditional UPDATE: a success stands even if this attempt's lease lapsed meanwhile (the
        work is done), but never rewrites a row already done. Returns whether it changed."""
        changed = (
            self.model.objects.filter(pk=row.pk)
            .exclude(status=self.done)
            .update(status=self.done, **{self.error_field: ""}, **fields)
        )
        return bool(changed)

    def complete_locked(self, row: Any, **fields: Any) -> None:
        """Mark a row claimed with :meth:`claim_locked` done, in the caller's transaction."""
        row.status = self.done
        setattr(row, self.error_field, "")
        for name, value in fields.items():
            setattr(row, name, value)
        row.save(update_fields=["status", "attempts", self.error_field, *fields])

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
        row.save(update_fields=["status", "attempts", self.error_field, "next_attempt_at"])
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
        row.save(update_fields=["status", "attempts", "next_attempt_at"])
        return True

    # --- recovery ------------------------------------------------------------------------------

    def requeue(
        self,
        *,
        now: datetime | None = None,
        batch: int = 500,
        order: str = "next_attempt_at",
        grace: float | None = None,
    ) -> list[int]:
        """The ids of rows whose work was lost, for the caller to publish after commit: rows
        pending ``requeue_after`` (or ``grace``) seconds past their next attempt, and rows
        running past the lease (set back to pending, their attempt counted). Claims with
        ``SKIP LOCKED`` and moves each row's next attempt to now, so two sweeps at once return
        a row once. Call inside ``transaction.atomic()`` and publish with ``on_commit``."""
        now = now or timezone.now()
        wait = timedelta(seconds=_seconds(self.requeue_after if grace is None else grace))
        lease = timedelta(seconds=_seconds(self.lease))
        pending = list(
            self.model.objects.select_for_update(skip_locked=True)
            .filter(status=self.pending, next_attempt_at__lte=now - wait)
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
            self.model.objects.filter(pk__in=pending).update(next_attempt_at=now)
        if stuck:
            self.model.objects.filter(pk__in=stuck).update(
                status=self.pending,
                next_attempt_at=now,
                **{self.error_field: "Interrupted (worker lost while working); re-queued."},
            )
        return pending + stuck
