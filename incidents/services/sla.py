"""Noting SLA breaches (§2.1 targets) on the timeline, once per incident, target and due time.

A recorded breach is kept: its row is never deleted and the incident's breach flag for the
target is never cleared, so no later edit turns the target back into a met one."""

from __future__ import annotations

from datetime import datetime

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from ..events import INCIDENT_SLA_BREACHED, announce
from ..models import Incident, Kind, SlaBreach, SlaTarget, Source
from ..timeformat import when
from .common import audited_save, timeline_record

SWEEP_HEARTBEAT_KEY = "vigil:incidents:sla_sweep:last"
BATCH = 200

_DUE_FIELD = {SlaTarget.RESPONSE: "response_due_at", SlaTarget.RESOLUTION: "resolution_due_at"}
_RECORDED_FLAG = {
    SlaTarget.RESPONSE: "response_breach_recorded",
    SlaTarget.RESOLUTION: "resolution_breach_recorded",
}


def _due(target: str, now: datetime) -> QuerySet[Incident]:
    due_field = _DUE_FIELD[target]
    noted = SlaBreach.objects.filter(
        incident=OuterRef("pk"), target=target, due_at=OuterRef(due_field)
    )
    incidents = Incident.objects.active().filter(**{f"{due_field}__lt": now})
    if target == SlaTarget.RESPONSE:
        incidents = incidents.filter(acknowledged_at__isnull=True)
    else:
        incidents = incidents.filter(resolved_at__isnull=True)
    return incidents.filter(~Exists(noted))


def sla_breaches_record(*, now: datetime | None = None) -> int:
    """Note every response or resolution target that has passed on an active incident.

    Each breach is claimed by inserting its unique SlaBreach row (incident, target, due time),
    so concurrent sweeps and repeated runs note it once; each noted breach gets a timeline
    entry and sends ``incident_sla_breached`` after commit. An incident whose row is locked
    by someone else is left to the next sweep. Returns the number of breaches noted.
    """
    now = now or timezone.now()
    noted = 0
    for target in (SlaTarget.RESPONSE, SlaTarget.RESOLUTION):
        # Keyset pagination: a skipped (locked) incident stays due, and re-reading from the
        # start would spin on it for as long as its lock is held.
        after = 0
        while True:
            batch = list(
                _due(target, now)
                .filter(pk__gt=after)
                .order_by("pk")
                .values_list("pk", flat=True)[:BATCH]
            )
            for incident_id in batch:
                noted += _note(incident_id=incident_id, target=target, now=now)
            if len(batch) < BATCH:
                break
            after = batch[-1]
    cache.set(SWEEP_HEARTBEAT_KEY, now.isoformat(), timeout=None)
    return noted


@transaction.atomic
def _note(*, incident_id: int, target: str, now: datetime) -> int:
    # Re-read under the lock: between the batch query and here the incident may have been
    # acknowledged, resolved or had its severity (and so its due time) changed.
    incident = _due(target, now).select_for_update(skip_locked=True).filter(pk=incident_id).first()
    if incident is None:
        return 0
    return _record(incident=incident, target=target, now=now)


def sla_breaches_record_due(*, incident: Incident, now: datetime) -> int:
    """Record the breach of each running clock of ``incident`` already past its due time.

    For services about to move a running clock (a severity change, a corrected detection
    time): what the sweep would note on its next run is noted first, so moving the due time
    later cannot make a missed target look met. The caller holds the incident's row lock and
    has not changed the instance yet (the breach is saved from it). Idempotent: a breach
    already recorded for the current due time is not recorded again. Returns the number noted.
    """
    if not incident.is_active:
        return 0
    noted = 0
    for target in (SlaTarget.RESPONSE, SlaTarget.RESOLUTION):
        stopped_at = (
            incident.acknowledged_at if target == SlaTarget.RESPONSE else incident.resolved_at
        )
        due = getattr(incident, _DUE_FIELD[target])
        if stopped_at is None and due < now:
            noted += _record(incident=incident, target=target, now=now)
    return noted


def _record(*, incident: Incident, target: str, now: datetime) -> int:
    """Insert the breach row (its unique key claims it), keep the incident's breach flag,
    and note it on the timeline. The caller holds the incident's row lock."""
    due = getattr(incident, _DUE_FIELD[target])
    try:
        with transaction.atomic():
            SlaBreach.objects.create(incident=incident, target=target, due_at=due, noted_at=now)
    except IntegrityError:
        return 0
    flag = _RECORDED_FLAG[target]
    if not getattr(incident, flag):
        setattr(incident, flag, True)
        audited_save(
            incident,
            actor=None,
            reason=f"{target} target breached",
            update_fields=[flag, "updated_at"],
        )
    label = SlaTarget(target).label.lower()
    timeline_record(
        incident=incident,
        kind=Kind.SLA,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"{label.capitalize()} target breached: due {when(due)} (Sev {incident.severity_id})."
        ),
        data={"target": target, "due_at": due.isoformat()},
        occurred_at=now,
    )
    announce(INCIDENT_SLA_BREACHED, incident=incident, target=target, due_at=due.isoformat())
    return 1
