"""How KPIs follow incidents: handlers of the core's durable events, subscribed in
``KpisConfig.ready``, each under a handler name of its own (``kpis.<concern>``), run after the
incident's change committed, once per event, in event order per incident."""

from __future__ import annotations

from incidents.events import event_incident

# --- the customer satisfaction survey -----------------------------------------------------------

SURVEY_HANDLER = "kpis.survey"


def survey_on_transitioned(event) -> None:
    """Resolved: invite the affected customers' contacts to the survey (a reopen and a second
    resolution invite no one twice)."""
    from incidents.models import Status

    from .services.survey import survey_send

    if event.payload.get("to_status") != Status.RESOLVED:
        return
    incident = event_incident(event)
    survey_send(incident=incident)


def survey_subscribe() -> None:
    from incidents.events import INCIDENT_TRANSITIONED, events_subscribe

    events_subscribe(
        handler=SURVEY_HANDLER, event=INCIDENT_TRANSITIONED, callback=survey_on_transitioned
    )


# --- the stored monthly rollups -----------------------------------------------------------------

ROLLUPS_HANDLER = "kpis.rollups"


def rollups_on_change(event) -> None:
    """Anything that changes how an incident counts (created late, transitioned, re-timed,
    re-rated, severity or services changed, a role handed over) marks its month stale; a
    corrected detection time also marks the month it moved out of. The rollup sweep recomputes
    them within minutes."""
    from datetime import datetime

    from .services.rollups import kpi_months_mark_stale, month_of

    detected_at = event_incident(event).detected_at
    moments = [detected_at] if detected_at is not None else []
    previous = (event.payload or {}).get("previous_detected_at")
    if previous:
        moments.append(datetime.fromisoformat(previous))
    if moments:
        kpi_months_mark_stale(months={month_of(moment) for moment in moments})


def rollups_subscribe() -> None:
    from incidents.events import (
        INCIDENT_CREATED,
        INCIDENT_ROLE_ASSIGNED,
        INCIDENT_SEVERITY_CHANGED,
        INCIDENT_TRANSITIONED,
        INCIDENT_UPDATED,
        events_subscribe,
    )

    for name in (
        INCIDENT_CREATED,
        INCIDENT_TRANSITIONED,
        INCIDENT_UPDATED,
        INCIDENT_SEVERITY_CHANGED,
        INCIDENT_ROLE_ASSIGNED,
    ):
        events_subscribe(handler=ROLLUPS_HANDLER, event=name, callback=rollups_on_change)


# --- subscribing --------------------------------------------------------------------------------


def subscribe() -> None:
    """Subscribe every KPIs handler (idempotent)."""
    survey_subscribe()
    rollups_subscribe()
