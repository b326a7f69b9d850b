"""How public communication follows incidents: handlers of the core's durable events, subscribed
in ``CommunicationsConfig.ready`` under one handler name, ``communications``.

Each runs after the incident's change committed, in a transaction of its own that also records
that it ran (once per event), in event order per incident.
"""

from __future__ import annotations

from incidents.events import INCIDENT_TRANSITIONED, events_subscribe
from incidents.models import Incident, IncidentEvent, Status

from .services.updates import status_update_restoration_prepare

HANDLER = "communications"


def on_incident_transitioned(event: IncidentEvent) -> None:
    """An incident resolved: prepare its restoration notice draft."""
    if event.payload.get("to_status") != Status.RESOLVED:
        return
    incident = Incident.objects.get(pk=event.incident_id)
    status_update_restoration_prepare(incident=incident)


def subscribe() -> None:
    for name, callback in ((INCIDENT_TRANSITIONED, on_incident_transitioned),):
        events_subscribe(handler=HANDLER, event=name, callback=callback)
