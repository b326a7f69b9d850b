"""How escalation follows incidents: handlers of the core's durable events, subscribed in
``EscalationConfig.ready`` under one handler name, ``escalation``.

Each runs after the incident's change committed, in a transaction of its own that also records
that it ran (once per event), in event order per incident: an incident is paged because its
``incident_created`` event committed with it. Times come from the event, not the clock, so a
handler that runs late (a worker was down) decides as it would have on time.
"""

from __future__ import annotations

import copy
from datetime import datetime

from django.contrib.auth import get_user_model

from incidents.events import (
    INCIDENT_CREATED,
    INCIDENT_ROLE_ASSIGNED,
    INCIDENT_SEVERITY_CHANGED,
    INCIDENT_TRANSITIONED,
    INCIDENT_UPDATED,
    event_incident,
    events_subscribe,
)
from incidents.models import Incident, IncidentEvent, SeverityLevel

from .services.ack_links import paged_roles_claim_after_ack
from .services.paging import incident_page_assignee, incident_page_security, incident_page_team
from .services.timers import (
    escalation_escalate_now,
    escalation_on_detection_change,
    escalation_on_severity_change,
    escalation_on_transition,
    escalation_start,
)

HANDLER = "escalation"


def _incident(event: IncidentEvent) -> Incident:
    return event_incident(event)


def on_incident_created(event: IncidentEvent) -> None:
    """``paging`` (``incident_create``'s, from an alert rule's action): "team" pages the
    response team; "none" pages nobody (the timers still run: an unacknowledged incident
    still reaches the backups and the matrix); "escalate" also fires the matrix's first
    step now; "security" also notifies the security team contact."""
    incident = _incident(event)
    paging = event.payload.get("paging", "team")
    escalation_start(incident=incident, now=event.occurred_at)
    if paging == "none":
        return
    incident_page_team(incident=incident, reason="logged")
    if paging == "escalate":
        escalation_escalate_now(incident=incident, now=event.occurred_at)
    elif paging == "security":
        incident_page_security(incident=incident)


def on_incident_severity_changed(event: IncidentEvent) -> None:
    incident = _incident(event)
    old, new = int(event.payload["old_severity"]), int(event.payload["new_severity"])
    escalation_on_severity_change(
        incident=incident, old_severity=old, new_severity=new, now=event.occurred_at
    )
    # Level 1 is the most severe: a smaller number is a rise. A drop pages nobody. The raise
    # is paged under the severity it raised to, even if it was changed again since.
    if new < old and incident.is_active:
        # The team is paged on the raised severity's channels (and under its keys), not on
        # whatever the incident's severity is by the time this runs. On a copy: the event's
        # incident is shared by its handlers.
        raised = copy.copy(incident)
        raised.severity = SeverityLevel.objects.get(level=new)
        incident_page_team(incident=raised, reason="raised")


def on_incident_transitioned(event: IncidentEvent) -> None:
    incident = _incident(event)
    escalation_on_transition(
        incident=incident, action=event.payload["action"], now=event.occurred_at
    )
    if event.payload["action"] == "acknowledge" and event.actor_id is not None:
        # Acknowledged in Vigil by someone paged for a role: they take it if nobody holds it.
        user = get_user_model().objects.filter(pk=event.actor_id).first()
        if user is not None:
            paged_roles_claim_after_ack(incident=incident, user=user, source=event.source)


def on_incident_role_assigned(event: IncidentEvent) -> None:
    user_id = event.payload.get("user_id")
    if user_id is None:
        return
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is not None:
        incident_page_assignee(
            incident=_incident(event), role_key=event.payload["role_key"], user=user
        )


def on_incident_updated(event: IncidentEvent) -> None:
    if "detected_at" in event.payload.get("fields", ()):
        escalation_on_detection_change(
            incident=_incident(event),
            previous_detected_at=datetime.fromisoformat(event.payload["previous_detected_at"]),
            now=event.occurred_at,
        )


def subscribe() -> None:
    for name, callback in (
        (INCIDENT_CREATED, on_incident_created),
        (INCIDENT_SEVERITY_CHANGED, on_incident_severity_changed),
        (INCIDENT_TRANSITIONED, on_incident_transitioned),
        (INCIDENT_ROLE_ASSIGNED, on_incident_role_assigned),
        (INCIDENT_UPDATED, on_incident_updated),
    ):
        events_subscribe(handler=HANDLER, event=name, callback=callback)
