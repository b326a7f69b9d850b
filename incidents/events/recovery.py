"""Recovering incident events: queueing again those whose kick was lost or whose dispatcher
died, and the operator's retry of a handler that was given up."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..models.events import EventHandling, EventStatus, HandlingStatus, IncidentEvent
from .recording import EVENT_QUEUE, events_kick

logger = logging.getLogger(__name__)


def events_requeue(*, now: datetime | None = None) -> int:
    """Queue again the following of events whose kick was lost (pending past their next
    attempt by ``VIGIL_EVENT_REQUEUE_AFTER_SECONDS``) or whose dispatcher died (running past
    the lease). One task per incident. Safe to run twice at once. Returns how many incidents
    were queued."""
    with transaction.atomic():
        ids = EVENT_QUEUE.requeue(now=now, order="id")
        # Urgent rows first, and an incident's first row decides: an incident with any urgent
        # event (a Sev 4 raised to Sev 1) goes back on the urgent queue.
        incidents: dict[int, bool] = {}
        for incident_id, urgent in (
            IncidentEvent.objects.filter(pk__in=ids)
            .order_by("-urgent", "id")
            .values_list("incident_id", "urgent")
        ):
            incidents.setdefault(incident_id, urgent)
        for incident_id, urgent in incidents.items():
            transaction.on_commit(
                lambda i=incident_id, u=urgent: events_kick(incident_id=i, urgent=u)
            )
    if incidents:
        logger.info("Re-queued the events of %s incident(s)", len(incidents))
    return len(incidents)


@transaction.atomic
def event_handling_retry(*, handling: EventHandling) -> bool:
    """Run a given-up handler again (the admin's "retry"), with a fresh attempt budget, and
    put its event back to pending. Returns False (changing nothing) unless it had failed."""
    locked = EventHandling.objects.select_for_update().select_related("event").get(pk=handling.pk)
    if locked.status != HandlingStatus.FAILED:
        return False
    locked.status = HandlingStatus.RETRYING
    locked.attempts = 0
    locked.next_attempt_at = None
    locked.finished_at = None
    locked.save(update_fields=["status", "attempts", "next_attempt_at", "finished_at"])
    event = IncidentEvent.objects.select_for_update().get(pk=locked.event_id)
    event.status = EventStatus.PENDING
    event.next_attempt_at = timezone.now()
    event.handled_at = None
    event.save(update_fields=["status", "next_attempt_at", "handled_at"])
    incident_id, urgent = event.incident_id, event.urgent
    transaction.on_commit(lambda: events_kick(incident_id=incident_id, urgent=urgent))
    return True
