"""Signal receivers of the escalation app, connected in ``EscalationConfig.ready``.

They listen to ``incident_event_in_transaction``, so the escalation state and the outbox rows
an event causes are written in the transaction of the event itself: they commit with it or
not at all, and an error here rolls the action back rather than leaving an incident unpaged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from incidents.models import Incident

from .services.paging import incident_page_assignee, incident_page_security, incident_page_team
from .services.timers import (
    escalation_escalate_now,
    escalation_on_detection_change,
    escalation_on_severity_change,
    escalation_on_transition,
    escalation_start,
)


def _incident(incident_id: int) -> Incident:
    return Incident.objects.select_related("severity").get(pk=incident_id)


def on_incident_created(*, incident_id: int, paging: str = "team", **payload: Any) -> None:
    """``paging`` (``incident_create``'s, from an alert rule's action): "team" pages the
    response team; "none" pages nobody (the timers still run: an unacknowledged incident
    still reaches the backups and the matrix); "escalate" also fires the matrix's first
    step now; "security" also notifies the security team contact."""
    incident = _incident(incident_id)
    now = timezone.now()
    escalation_start(incident=incident, now=now)
    if paging == "none":
        return
    incident_page_team(incident=incident, reason="logged")
    if paging == "escalate":
        escalation_escalate_now(incident=incident, now=now)
    elif paging == "security":
        incident_page_security(incident=incident)


def on_incident_severity_changed(
    *, incident_id: int, old_severity: int, new_severity: int, **payload: Any
) -> None:
    incident = _incident(incident_id)
    escalation_on_severity_change(
        incident=incident, old_severity=old_severity, new_severity=new_severity
    )
    # Level 1 is the most severe: a smaller number is a rise. A drop pages nobody.
    if new_severity < old_severity and incident.is_active:
        incident_page_team(incident=incident, reason="raised")


def on_incident_transitioned(*, incident_id: int, action: str, **payload: Any) -> None:
    escalation_on_transition(incident=_incident(incident_id), action=action)


def on_incident_role_assigned(
    *, incident_id: int, role_key: str, user_id: int | None, **payload: Any
) -> None:
    if user_id is None:
        return
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first()
    if user is not None:
        incident_page_assignee(incident=_incident(incident_id), role_key=role_key, user=user)


def on_incident_updated(
    *, incident_id: int, fields: list[str], previous_detected_at: str, **payload: Any
) -> None:
    if "detected_at" in fields:
        escalation_on_detection_change(
            incident=_incident(incident_id),
            previous_detected_at=datetime.fromisoformat(previous_detected_at),
        )


HANDLERS = {
    "incident_created": on_incident_created,
    "incident_severity_changed": on_incident_severity_changed,
    "incident_transitioned": on_incident_transitioned,
    "incident_role_assigned": on_incident_role_assigned,
    "incident_updated": on_incident_updated,
}


def on_incident_event(sender: Any, *, event: str, **payload: Any) -> None:
    """Dispatch an in-transaction incident event to its handler (others are ignored)."""
    handler = HANDLERS.get(event)
    if handler is not None:
        handler(**payload)
