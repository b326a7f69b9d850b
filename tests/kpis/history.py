"""Incidents with a known history for KPI tests: each step happens at its own time."""

from __future__ import annotations

from datetime import datetime, timedelta

import time_machine

from incidents.models import Incident, Kind, Source
from incidents.services import incident_create, incident_transition
from incidents.services.common import timeline_record


def incident_at(
    detected: datetime,
    *,
    severity: int = 3,
    impact_before: timedelta | None = timedelta(minutes=4),
    ack_after: timedelta | None = timedelta(minutes=10),
    resolve_after: timedelta | None = timedelta(hours=2),
    services=(),
    source: str = "monitoring",
    escalated: bool = False,
    reopened: bool = False,
    title: str = "Checkout errors",
) -> Incident:
    """Create an incident detected at ``detected`` (its impact started ``impact_before`` earlier),
    acknowledged ``ack_after`` and resolved ``resolve_after`` after detection (None: not yet)."""
    with time_machine.travel(detected, tick=False):
        incident = incident_create(
            actor=None,
            source=Source.SYSTEM,
            title=title,
            severity=severity,
            services=list(services),
            detection_source=source,
            impact_started_at=detected - impact_before if impact_before is not None else None,
            detected_at=detected,
        )
    if ack_after is not None:
        with time_machine.travel(detected + ack_after, tick=False):
            incident = incident_transition(
                incident=incident, action="acknowledge", actor=None, source=Source.SYSTEM
            )
            incident = incident_transition(
                incident=incident, action="investigate", actor=None, source=Source.SYSTEM
            )
    if escalated:
        with time_machine.travel(detected + timedelta(minutes=30), tick=False):
            timeline_record(
                incident=incident,
                kind=Kind.ESCALATION,
                source=Source.SYSTEM,
                actor=None,
                message="Escalated to the IT Manager.",
            )
    if resolve_after is not None:
        if reopened:
            with time_machine.travel(detected + resolve_after / 2, tick=False):
                incident = incident_transition(
                    incident=incident,
                    action="resolve",
                    actor=None,
                    source=Source.SYSTEM,
                    resolution="Restarted.",
                )
            with time_machine.travel(detected + resolve_after * 3 / 4, tick=False):
                incident = incident_transition(
                    incident=incident, action="reopen", actor=None, source=Source.SYSTEM
                )
        with time_machine.travel(detected + resolve_after, tick=False):
            incident = incident_transition(
                incident=incident,
                action="resolve",
                actor=None,
                source=Source.SYSTEM,
                resolution="Rolled back the release.",
            )
    return incident
