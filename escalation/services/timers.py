"""Escalation timers (§2.1 response targets, §5.1 escalation matrix): the per-incident escalation
state, its policy snapshot, and the beat sweep that fires what is due, each step exactly once.

How due times are kept. Each incident has one :class:`IncidentEscalation` row holding two
indexed due times: ``ack_due_at`` (the response target; passing it unacknowledged pages the
backup contacts) and ``next_due_at`` (the earliest matrix step not yet fired). The sweep finds
rows through those columns alone, so its cost follows what is due, not what is open. No task
waits on a broker ETA.

Exactly once. A step fires by inserting its :class:`EscalationEvent`, UNIQUE (incident, step);
its notifications and timeline entry are written in the same transaction, so a step either
fired completely or not at all. The sweep claims each row with ``SELECT ... FOR UPDATE SKIP
LOCKED`` on the escalation *and* its incident (the lifecycle services lock the incident first
and then the escalation; a sweep that never waits cannot deadlock with them), so two sweeps,
or a sweep and a status change, never work on one incident at once.

The policy snapshot. When escalation starts, the matrix rows of every severity, the contact of
every escalation level and the backup contacts of the incident manager and technical lead are
copied into ``policy_snapshot``; steps, recipients and channels come from the snapshot, so
editing the policy mid-incident does not rewrite a running escalation.

Which steps of a row fire (``severity_from``). A step is due at detection + its elapsed time and
fires if it is due at or after ``severity_from``:

* when escalation starts: ``severity_from`` = detection. Every step of the row counts, so an
  incident logged late (detection back-dated) fires the steps its age has already reached on
  the next sweep, once each.
* when severity rises: ``severity_from`` = detection again, and the new row applies from then
  on. A more serious incident is owed every step its age has reached under the more serious
  row, so the steps of the new row already past (and not fired before) fire on the next sweep,
  once each, marked as sent late. Steps of the old row not yet fired no longer fire.
* when severity drops: ``severity_from`` = the moment of the drop. Steps of the new row that
  lie in the past are not fired retroactively (whoever they name has either been told under
  the more serious row or need not be told now); its later steps apply.
* on reopen: ``severity_from`` = the moment of reopening; steps that fell due while the incident
  was resolved are not fired retroactively. Resolution and cancellation stop escalation.

The acknowledgement timer fires once per incident. It follows the response due time the core
recomputes on a severity change (a raise can make it due at once); acknowledging stops it.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q, QuerySet, prefetch_related_objects
from django.utils import timezone

from incidents.bulk import rows_insert
from incidents.models import (
    Incident,
    Status,
)
from incidents.services.common import (
    insert_unless_present,
    timeline_record,
    timeline_record_many,
)
from incidents.timeformat import when

from ..models import EscalationEvent, IncidentEscalation
from .firing import Announced, Fired, Firing, announce, announce_step, create_event, event_fields
from .paging import (
    incident_context,
    pages_write,
)
from .snapshot import policy_snapshot_take, snapshot_row

logger = logging.getLogger(__name__)

__all__ = [
    "ACK_TIMEOUT_STEP",
    "SWEEP_HEARTBEAT_KEY",
    "Fired",
    "escalation_advance",
    "escalation_due",
    "escalation_escalate_now",
    "escalation_on_severity_change",
    "escalation_on_transition",
    "escalation_start",
    "escalation_sweep",
]

SWEEP_HEARTBEAT_KEY = "vigil:escalation:sweep:last"
ACK_TIMEOUT_STEP = "ack-timeout"
# Escalations claimed and advanced per transaction: few enough that an incident's other work
# (an acknowledgement) waits on the batch's locks a fraction of a second at most.
BATCH = 50
STOPPING_STATUSES = (Status.RESOLVED, Status.CLOSED, Status.CANCELLED)


def _step_due(incident: Incident, step: dict[str, Any]) -> datetime:
    return incident.detected_at + timedelta(seconds=step["elapsed_s"])


def _next_due(esc: IncidentEscalation, incident: Incident, fired: set[str]) -> datetime | None:
    dues = [
        due
        for step in snapshot_row(esc.policy_snapshot, incident.severity_id)
        if step["step"] not in fired and (due := _step_due(incident, step)) >= esc.severity_from
    ]
    return min(dues, default=None)


def _fired(incident: Incident) -> set[str]:
    return set(EscalationEvent.objects.filter(incident=incident).values_list("step", flat=True))


def _locked(incident_id: int) -> IncidentEscalation | None:
    return IncidentEscalation.objects.select_for_update().filter(incident_id=incident_id).first()


# --- starting, changing, stopping ------------------------------------------------------------


def escalation_start(*, incident: Incident, now: datetime | None = None) -> IncidentEscalation:
    """Start an incident's escalation in the current transaction (the incident's creation).

    Takes the policy snapshot; ``ack_due_at`` = the response due time (unless acknowledged);
    ``next_due_at`` = the first matrix step of the severity's row, counted from detection.
    Idempotent: an incident that already has an escalation keeps it unchanged.
    """
    now = now or timezone.now()
    esc = IncidentEscalation(
        incident=incident,
        started_at=now,
        policy_snapshot=policy_snapshot_take(now=now),
        severity_from=incident.detected_at,
        ack_due_at=incident.response_due_at if incident.acknowledged_at is None else None,
    )
    esc.next_due_at = _next_due(esc, incident, set())
    # INSERT … ON CONFLICT DO NOTHING RETURNING id, without reading first (a new incident has
    # none) and without a savepoint: an incident that has one already (a second call, a race
    # the event's lock all but rules out) keeps it, read back.
    if not insert_unless_present(esc):
        return IncidentEscalation.objects.get(incident=incident)
    return esc


def escalation_on_severity_change(
    *, incident: Incident, old_severity: int, new_severity: int, now: datetime | None = None
) -> IncidentEscalation | None:
    """Apply the new severity's matrix row (rules in the module docstring) and follow the
    recomputed response due time. Runs in the transaction of the change, which holds the
    incident's lock. A stopped escalation is left alone (reopening
    restarts it under the severity of that moment). Idempotent for the same change."""
    now = now or timezone.now()
    esc = _locked(incident.pk)
    if esc is None or esc.stopped_at is not None:
        return esc
    raised = new_severity < old_severity
    esc.severity_from = incident.detected_at if raised else now
    fired = _fired(incident)
    if ACK_TIMEOUT_STEP not in fired and incident.acknowledged_at is None:
        esc.ack_due_at = incident.response_due_at
    esc.next_due_at = _next_due(esc, incident, fired)
    esc.save(update_fields=["severity_from", "ack_due_at", "next_due_at"])
    return esc


def escalation_on_detection_change(
    *, incident: Incident, previous_detected_at: datetime, now: datetime | None = None
) -> IncidentEscalation | None:
    """Follow a corrected detection time, in the transaction of the edit: matrix steps are
    counted from detection, so the schedule and the acknowledgement timer (the response due
    time, recomputed by the core) move with it. A row that applied from the old detection time
    now applies from the new one; a row that applied from a later severity change keeps its
    start. Steps that became due by the correction fire on the next sweep, once each.
    A stopped escalation is left alone."""
    esc = _locked(incident.pk)
    if esc is None or esc.stopped_at is not None:
        return esc
    if esc.severity_from == previous_detected_at:
        esc.severity_from = incident.detected_at
    fired = _fired(incident)
    if ACK_TIMEOUT_STEP not in fired and incident.acknowledged_at is None:
        esc.ack_due_at = incident.response_due_at
    esc.next_due_at = _next_due(esc, incident, fired)
    esc.save(update_fields=["severity_from", "ack_due_at", "next_due_at"])
    return esc


def escalation_on_transition(
    *, incident: Incident, action: str, now: datetime | None = None
) -> IncidentEscalation | None:
    """Follow a lifecycle transition, in its transaction: an acknowledgement (explicit or by
    taking action) stops the acknowledgement timer; resolve, close and cancel stop escalation
    (``stopped_at``, ``stop_reason``); reopen restarts it from that moment (module docstring).
    Writes no timeline entry: the transition's own entry says what happened, and the
    escalation's state is shown on the incident page. Idempotent."""
    now = now or timezone.now()
    esc = _locked(incident.pk)
    if esc is None:
        return None
    fields: list[str] = []
    if incident.acknowledged_at is not None and esc.ack_due_at is not None:
        esc.ack_due_at = None
        fields.append("ack_due_at")
    if incident.status in STOPPING_STATUSES and esc.stopped_at is None:
        esc.stopped_at = now
        esc.stop_reason = f"Incident {Status(incident.status).label.lower()}."
        esc.next_due_at = None
        esc.ack_due_at = None
        fields += ["stopped_at", "stop_reason", "next_due_at", "ack_due_at"]
    elif action == "reopen" and incident.is_active and esc.stopped_at is not None:
        esc.stopped_at = None
        esc.stop_reason = ""
        esc.severity_from = now
        esc.next_due_at = _next_due(esc, incident, _fired(incident))
        fields += ["stopped_at", "stop_reason", "severity_from", "next_due_at"]
    if fields:
        esc.save(update_fields=sorted(set(fields)))
    return esc


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _upcoming_text(esc: IncidentEscalation, incident: Incident) -> str:
    if esc.next_due_at is None:
        return "No further matrix step is due."
    for step in snapshot_row(esc.policy_snapshot, incident.severity_id):
        if _step_due(incident, step) == esc.next_due_at:
            level = esc.policy_snapshot["levels"].get(step["level"], {})
            return f"Next: {level.get('name', step['level'])} at {when(esc.next_due_at)}."
    return f"Next step at {when(esc.next_due_at)}."


# --- the sweep -------------------------------------------------------------------------------


def escalation_due(*, now: datetime) -> QuerySet[IncidentEscalation]:
    """Running escalations with something due, found through the two partial indexes."""
    return IncidentEscalation.objects.filter(stopped_at__isnull=True).filter(
        Q(next_due_at__lte=now) | Q(ack_due_at__lte=now)
    )


def escalation_sweep(
    *, now: datetime | None = None, batch: int = BATCH, time_budget: float | None = None
) -> list[Fired]:
    """Fire every escalation step and acknowledgement timeout due at ``now`` (default: the
    current time), each exactly once; steps missed while no sweep ran are caught up once each.

    Works in batches of ``batch`` rows, one transaction each: the batch is claimed in one
    query (``FOR UPDATE SKIP LOCKED`` on the escalations and their incidents), its events,
    timeline entries and due times are written with one statement each, and its pages through
    the outbox. Safe to run concurrently (claims skip what another sweep holds) and repeatedly
    (fired steps are recorded). A batch that fails is rolled back and its rows are retried one
    by one, each in its own transaction: a row that fails again is logged and left for the next
    sweep; the others still run. With ``time_budget`` (seconds) the sweep takes no new batch once
    the budget is spent, so a backlog is worked off over several sweeps instead of hitting the
    task's time limit. At the end stores the completion time under ``SWEEP_HEARTBEAT_KEY`` for
    the watchdog. Returns what fired.
    """
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget if time_budget is not None else None

    def out_of_time() -> bool:
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("Escalation sweep out of time; the rest is left for the next one")
            return True
        return False

    fired: list[Fired] = []
    # Keyset pagination: a row skipped because someone holds it stays due, and re-reading
    # from the start would spin on it.
    after = 0
    while not out_of_time():
        claimed: list[int] = []
        try:
            with transaction.atomic():
                escalations = _claim(now=now, after=after, batch=batch)
                claimed = [esc.pk for esc in escalations]
                done = _advance_claimed(escalations, now=now)
            fired.extend(done)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            if not claimed:
                logger.exception("Escalation sweep could not claim its rows; left for the next")
                break
            logger.warning("An escalation batch failed; retrying its rows singly", exc_info=True)
            for pk in claimed:
                if out_of_time():
                    break
                try:
                    fired.extend(escalation_advance(escalation_id=pk, now=now))
                except SoftTimeLimitExceeded:
                    raise
                except Exception:
                    logger.exception(
                        "Escalation %s could not be advanced; left for the next sweep", pk
                    )
        if len(claimed) < batch:
            break
        after = claimed[-1]
    cache.set(SWEEP_HEARTBEAT_KEY, timezone.now().isoformat(), timeout=None)
    if fired:
        logger.info("Escalation sweep fired %s step(s)", len(fired))
    return fired


def _claim(*, now: datetime, after: int, batch: int) -> list[IncidentEscalation]:
    """Up to ``batch`` due escalations after ``after`` (by id), locked with their incidents;
    rows someone else holds are skipped, not waited for."""
    return list(
        escalation_due(now=now)
        .filter(pk__gt=after)
        .select_for_update(skip_locked=True, of=("self", "incident"))
        .select_related("incident", "incident__severity")
        .order_by("pk")[:batch]
    )


@transaction.atomic
def escalation_advance(*, escalation_id: int, now: datetime) -> list[Fired]:
    """Fire what is due on one escalation and move its due times on, in one transaction.

    Claims the escalation and its incident with ``FOR UPDATE SKIP LOCKED``; a row someone else
    holds is skipped (returns nothing) and stays due for the next sweep. Fires the
    acknowledgement timeout (if still unacknowledged) and every matrix step of the current row
    due by ``now``, in due order, each by inserting its unique event. Idempotent.
    """
    esc = (
        IncidentEscalation.objects.select_for_update(skip_locked=True, of=("self", "incident"))
        .select_related("incident", "incident__severity")
        .filter(pk=escalation_id, stopped_at__isnull=True)
        .first()
    )
    if esc is None:
        return []
    return _advance_claimed([esc], now=now, one_by_one=True)


def _advance_claimed(
    escalations: list[IncidentEscalation], *, now: datetime, one_by_one: bool = False
) -> list[Fired]:
    """Fire what is due on escalations claimed (locked, with their incidents) by the current
    transaction, in due order per escalation, and move their due times on.

    The events of the whole batch are inserted in one statement: their unique (incident, step)
    cannot clash, because every event is inserted under the escalation's lock and the fired
    steps were read under it (a clash fails the batch, which the sweep then retries row by row).
    With ``one_by_one`` each event is inserted in a savepoint and a step found fired already is
    skipped (the single-row path). The timeline entries go in one statement, the due times in
    one or two."""
    stopped: list[IncidentEscalation] = []
    running: list[IncidentEscalation] = []
    fired_steps: dict[int, set[str]] = {esc.incident_id: set() for esc in escalations}
    for incident_id, step in EscalationEvent.objects.filter(
        incident_id__in=list(fired_steps)
    ).values_list("incident_id", "step"):
        fired_steps[incident_id].add(step)

    firings: list[Firing] = []
    for esc in escalations:
        incident = esc.incident
        if not incident.is_active:
            # Stopped by a transition that did not go through the services' receivers.
            esc.stopped_at = now
            esc.stop_reason = f"Incident {Status(incident.status).label.lower()}."
            esc.next_due_at = esc.ack_due_at = None
            stopped.append(esc)
            continue
        running.append(esc)
        firings.extend(_due_firings(esc, fired_steps[incident.pk], now=now))

    if one_by_one:
        for firing in firings:
            firing.event = create_event(**event_fields(firing, now=now))
    elif firings:
        events = [EscalationEvent(**event_fields(f, now=now)) for f in firings]
        rows_insert(events)
        for firing, event in zip(firings, events, strict=True):
            firing.event = event

    incidents = [f.esc.incident for f in firings]
    prefetch_related_objects(list({i.pk: i for i in incidents}.values()), "services")
    contexts: dict[int, dict[str, Any]] = {}
    zones: dict[int, Any] = {}
    announced: list[Announced] = []
    for firing in firings:
        incident = firing.esc.incident
        fired_steps[incident.pk].add(firing.key)
        if firing.event is None:
            continue  # fired already (by a sweep that held the row before us)
        if incident.pk not in contexts:
            contexts[incident.pk] = incident_context(incident)
        announced.append(announce(firing, now=now, context=contexts[incident.pk], zones=zones))
    # Every page of the batch in one INSERT; each still goes out as a task of its own.
    pages_write([plan for plan, _finish in announced])
    out: list[Fired] = []
    entries: list[dict[str, Any]] = []
    for _plan, finish in announced:
        entry, result = finish()
        entries.append(entry)
        out.append(result)
    timeline_record_many(entries=entries)

    for esc in running:
        esc.next_due_at = _next_due(esc, esc.incident, fired_steps[esc.incident_id])
    if running:
        _rows_update(running, ["ack_due_at", "next_due_at"])
    if stopped:
        _rows_update(stopped, ["stopped_at", "stop_reason", "next_due_at", "ack_due_at"])
    return out


def _rows_update(rows: list[IncidentEscalation], fields: list[str]) -> None:
    """``bulk_update(rows, fields)``; on PostgreSQL as one ``UPDATE … FROM (VALUES …)``, whose
    SQL costs a fraction of the Python of the ORM's ``CASE WHEN`` per row and field."""
    if connection.vendor != "postgresql" or len(rows) < 2:
        IncidentEscalation.objects.bulk_update(rows, fields)
        return
    meta = IncidentEscalation._meta
    quote = connection.ops.quote_name
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    # Every value cast: a column whose first rows are NULL would otherwise be read as text.
    # Strings as text, not varchar(n): a cast would cut a long value where the write must fail.
    casts = [
        "text" if c.get_internal_type() in ("CharField", "TextField") else c.db_type(connection)
        for c in columns
    ]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    names = ", ".join(f"v{index}" for index in range(len(columns)))
    sets = ", ".join(f"{quote(c.column)} = v.v{index}" for index, c in enumerate(columns) if index)
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {sets} "
        f"FROM (VALUES {', '.join([row] * len(rows))}) AS v({names}) "
        f"WHERE t.{quote(meta.pk.column)} = v.v0"
    )
    params = [
        c.get_db_prep_save(getattr(esc, c.attname), connection) for esc in rows for c in columns
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _due_firings(esc: IncidentEscalation, fired: set[str], *, now: datetime) -> list[Firing]:
    """What is due on ``esc`` by ``now`` and not fired, in due order; clears a passed
    acknowledgement due time (it fires once, or not at all once acknowledged)."""
    incident = esc.incident
    due: list[Firing] = []
    if esc.ack_due_at is not None and esc.ack_due_at <= now:
        if incident.acknowledged_at is None and ACK_TIMEOUT_STEP not in fired:
            due.append(Firing(esc=esc, key=ACK_TIMEOUT_STEP, due_at=esc.ack_due_at, step=None))
        esc.ack_due_at = None
    for step in snapshot_row(esc.policy_snapshot, incident.severity_id):
        step_due = _step_due(incident, step)
        if step["step"] not in fired and esc.severity_from <= step_due <= now:
            due.append(Firing(esc=esc, key=step["step"], due_at=step_due, step=step))
    due.sort(key=lambda firing: (firing.due_at, firing.key))
    return due


def escalation_escalate_now(*, incident: Incident, now: datetime | None = None) -> Fired | None:
    """Fire the first step of the incident's matrix row now, not at its due time (an alert
    rule's "escalate immediately", §7.2), in the current transaction. It is recorded as that
    step (its unique event), so the sweep does not fire it again when it falls due; the
    elapsed time shown is the real one. Idempotent: a step already fired fires no more."""
    now = now or timezone.now()
    esc = _locked(incident.pk)
    if esc is None or esc.stopped_at is not None:
        return None
    esc.incident = incident
    row = snapshot_row(esc.policy_snapshot, incident.severity_id)
    if not row or row[0]["step"] in _fired(incident):
        return None
    elapsed = max(0, int((now - incident.detected_at).total_seconds()))
    firing = Firing(esc=esc, key=row[0]["step"], due_at=now, step={**row[0], "elapsed_s": elapsed})
    firing.event = create_event(**event_fields(firing, now=now))
    if firing.event is None:
        return None
    plan, finish = announce_step(firing, now=now, context=incident_context(incident))
    pages_write([plan])
    entry, fired = finish()
    timeline_record(**entry)
    esc.next_due_at = _next_due(esc, incident, _fired(incident))
    esc.save(update_fields=["next_due_at"])
    return fired
