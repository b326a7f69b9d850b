"""How KPIs follow incidents: handlers of the core's durable events, subscribed in
``KpisConfig.ready``, each under a handler name of its own (``kpis.<concern>``), run after the
incident's change committed, once per event, in event order per incident."""

from __future__ import annotations

# --- the customer satisfaction survey -----------------------------------------------------------

SURVEY_HANDLER = "kpis.survey"


def survey_on_transitioned(event) -> None:
    """Resolved: invite the affected customers' contacts to the survey (a reopen and a second
    resolution invite no one twice)."""
    from incidents.models import Incident, Status

    from .services.survey import survey_send

    if event.payload.get("to_status") != Status.RESOLVED:
        return
    incident = Incident.objects.get(pk=event.incident_id)
    survey_send(incident=incident)


def survey_subscribe() -> None:
    from incidents.events import INCIDENT_TRANSITIONED, events_subscribe

    events_subscribe(
        handler=SURVEY_HANDLER, event=INCIDENT_TRANSITIONED, callback=survey_on_transitioned
    )


# --- subscribing --------------------------------------------------------------------------------


def subscribe() -> None:
    """Subscribe every KPIs handler (idempotent)."""
    survey_subscribe()
