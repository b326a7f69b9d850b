"""Noting SLA breaches (§2.1 targets) on the timeline, once per incident and target."""

from __future__ import annotations

from datetime import datetime

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import Incident, Kind, SlaBreach, SlaTarget, Source
from ..signals import announce, incident_sla_breached
from .common import timeline_record

SWEEP_HEARTBEAT_KEY = "vigil:incidents:sla_sweep:last"
BATCH = 200


def _due(target: str, now: datetime):
    incidents = Incident.objects.active().exclude(sla_breaches__target=target)
    if target == SlaTarget.RESPONSE:
        return incidents.filter(acknowledged_at__isnull=True, response_due_at__lt=now)
    return incidents.filter(resolved_at__isnull=True, resolution_due_at__lt=now)


def sla_breaches_record(*, now: datetime | None = None) -> int:
    """Note every response or resolution target that has passed on an active incident.

    Each breach is claimed by inserting its unique SlaBreach row, so concurrent sweeps and
    repeated runs note it once; each noted breach gets a timeline entry and sends
    ``incident_sla_breached`` after commit. Returns the number of breaches noted.
    """
    now = now or timezone.now()
    noted = 0
    for target in (SlaTarget.RESPONSE, SlaTarget.RESOLUTION):
        while True:
            batch = list(_due(target, now).order_by("pk").values_list("pk", flat=True)[:BATCH])
            if not batch:
                break
            for incident_id in batch:
                noted += _note(incident_id=incident_id, target=target, now=now)
            if len(batch) < BATCH:
                break
    cache.set(SWEEP_HEARTBEAT_KEY, now.isoformat(), timeout=None)
    return noted


@transaction.atomic
def _note(*, incident_id: int, target: str, now: datetime) -> int:
    incident = Incident.objects.select_for_update(skip_locked=True).filter(pk=incident_id).first()
    if incident is None:
        return 0  # another sweep holds it; it will note the breach
    due = incident.response_due_at if target == SlaTarget.RESPONSE else incident.resolution_due_at
    try:
        with transaction.atomic():
            SlaBreach.objects.create(incident=incident, target=target, due_at=due, noted_at=now)
    except IntegrityError:
        return 0
    label = SlaTarget(target).label.lower()
    timeline_record(
        incident=incident,
        kind=Kind.SLA,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"{label.capitalize()} target breached: due "
            f"{timezone.localtime(due):%Y-%m-%d %H:%M %Z} (Sev {incident.severity_id})."
        ),
        data={"target": target, "due_at": due.isoformat()},
        occurred_at=now,
    )
    announce(incident_sla_breached, incident_id=incident.pk, target=target, due_at=due.isoformat())
    return 1
