"""How reviews follow incidents: handlers of the core's durable events, subscribed in
``ReviewsConfig.ready``, each under a handler name of its own (``reviews.<concern>``), run after
the incident's change committed, once per event, in event order per incident."""

from __future__ import annotations

from incidents.events import event_incident

# The 48-hour documentation rule (§4.2 step 4) follows incidents under a handler name of its own.
DOCUMENTATION_HANDLER = "reviews.documentation"


def documentation_on_transitioned(event) -> None:
    """Resolved: start the documentation clock (restart it after a reopen). Reopened: pause it.
    Closed: the report may have been completed on the way."""
    from incidents.models import Status

    from .services.documentation import (
        documentation_clock_pause,
        documentation_clock_start,
        documentation_completed_check,
    )

    incident = event_incident(event)
    to_status = event.payload.get("to_status")
    if to_status == Status.RESOLVED:
        documentation_clock_start(incident=incident)
    elif event.payload.get("action") == "reopen":
        documentation_clock_pause(incident=incident)
    elif to_status == Status.CLOSED:
        documentation_completed_check(incident=incident, at=event.occurred_at)


def documentation_on_updated(event) -> None:
    """A report field edited: the report may now be complete (counted from the edit)."""

    from .services.documentation import REPORT_FIELDS, documentation_completed_check

    if not set(REPORT_FIELDS) & set(event.payload.get("fields", ())):
        return
    incident = event_incident(event)
    documentation_completed_check(incident=incident, at=event.occurred_at)


def documentation_subscribe() -> None:
    from incidents.events import INCIDENT_TRANSITIONED, INCIDENT_UPDATED, events_subscribe

    events_subscribe(
        handler=DOCUMENTATION_HANDLER,
        event=INCIDENT_TRANSITIONED,
        callback=documentation_on_transitioned,
    )
    events_subscribe(
        handler=DOCUMENTATION_HANDLER, event=INCIDENT_UPDATED, callback=documentation_on_updated
    )


# Booking (§8.1): a review booked when an incident the policy requires one for closes.
BOOKING_HANDLER = "reviews.booking"


def booking_on_transitioned(event) -> None:
    """Closed, with a severity in the policy's ``required_severities``: book its review (a
    no-op when one is booked already, e.g. on demand before closing)."""
    if event.payload.get("action") != "close":
        return
    from incidents.models import Source

    from .services.booking import review_book, review_required

    incident = event_incident(event)
    if review_required(incident=incident):
        review_book(incident=incident, actor=None, source=Source.SYSTEM, required=True)


def booking_subscribe() -> None:
    from incidents.events import INCIDENT_TRANSITIONED, events_subscribe
    from incidents.guards import close_guard_register

    from .services.booking import review_close_guard

    events_subscribe(
        handler=BOOKING_HANDLER, event=INCIDENT_TRANSITIONED, callback=booking_on_transitioned
    )
    close_guard_register(key="reviews.booked", check=review_close_guard)


def subscribe() -> None:
    """Subscribe every reviews handler (idempotent)."""
    documentation_subscribe()
    booking_subscribe()
