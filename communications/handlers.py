"""How public communication follows incidents: handlers of the core's durable events, subscribed
in ``CommunicationsConfig.ready`` under one handler name, ``communications``.

Each runs after the incident's change committed, in a transaction of its own that also records
that it ran (once per event), in event order per incident.
"""

from __future__ import annotations

from incidents.events import (
    INCIDENT_CREATED,
    INCIDENT_ROLE_ASSIGNED,
    INCIDENT_SEVERITY_CHANGED,
    INCIDENT_TRANSITIONED,
    INCIDENT_UPDATED,
    event_incident,
    events_subscribe,
)
from incidents.models import Incident, IncidentEvent, Status

from .services.clock import clock_for_incident_start, clock_for_incident_stop
from .services.restoration import status_update_restoration_prepare

HANDLER = "communications"


def on_incident_transitioned(event: IncidentEvent) -> None:
    """An incident resolved: prepare its restoration notice draft."""
    if event.payload.get("to_status") != Status.RESOLVED:
        return
    incident = event_incident(event)
    status_update_restoration_prepare(incident=incident)


# The 30-minute rule follows incidents under a handler name of its own: a subscription replaces
# the callback of the same (handler, event), and the clock's reactions are retried (or given up)
# apart from the restoration notice's.
CLOCK_HANDLER = "communications.first_update_clock"


def clock_on_incident_transitioned(event: IncidentEvent) -> None:
    """Acknowledged (or acknowledged by taking action) while customer-facing: start the
    first-update clock. Cancelled: stop it."""
    incident = event_incident(event)
    if event.payload.get("to_status") == Status.CANCELLED:
        clock_for_incident_stop(incident=incident)
    else:
        clock_for_incident_start(incident=incident)


def clock_on_incident_updated(event: IncidentEvent) -> None:
    """Marked customer-facing after acknowledgement: start (or re-arm) the clock; made
    internal: stop it."""
    if "customer_facing" not in event.payload.get("fields", ()):
        return
    incident = event_incident(event)
    if incident.customer_facing:
        clock_for_incident_start(incident=incident)
    else:
        clock_for_incident_stop(incident=incident)


# Enterprise direct contact follows incidents under a handler name of its own, retried (or given
# up) apart from the other reactions.
DIRECT_CONTACT_HANDLER = "communications.direct_contact"
DIRECT_CONTACT_FIELDS = {"services", "customer_facing"}


def direct_contact_on_event(event: IncidentEvent) -> None:
    """Created, severity changed, reopened, or its services or customer-facing flag edited:
    create the direct-contact tasks the incident now needs (idempotent)."""
    from .services.direct_contact import direct_contact_tasks_create

    if event.name == INCIDENT_UPDATED and not DIRECT_CONTACT_FIELDS & set(
        event.payload.get("fields", ())
    ):
        return
    if event.name == INCIDENT_TRANSITIONED and event.payload.get("action") != "reopen":
        return
    direct_contact_tasks_create(incident=event_incident(event))


def direct_contact_on_role_assigned(event: IncidentEvent) -> None:
    """An incident manager assigned: give them the incident's tasks that have no owner."""
    from .services.direct_contact import direct_contact_tasks_assign_unowned

    if event.payload.get("role_key") != "incident_manager" or not event.payload.get("user_id"):
        return
    direct_contact_tasks_assign_unowned(incident=event_incident(event))


# The stakeholder schedule (§5.2) follows incidents under a handler name of its own, retried (or
# given up) apart from the other reactions.
STAKEHOLDER_HANDLER = "communications.stakeholders"
STAKEHOLDER_ENDED = (Status.RESOLVED, Status.CLOSED, Status.CANCELLED)


def stakeholders_on_event(event: IncidentEvent) -> None:
    """Logged, moved between active statuses (reopened included) or its severity changed: plan
    the stakeholder schedules as of the event. Resolved, closed or cancelled: stop them, each
    group that was on one getting its final message."""
    from .services.stakeholders import stakeholder_schedules_stop, stakeholder_schedules_sync

    if event.payload.get("to_status") in STAKEHOLDER_ENDED:
        # It reads the incident afresh (with its severity): no read here.
        stakeholder_schedules_stop(incident=Incident(pk=event.incident_id))
    else:
        stakeholder_schedules_sync(incident=event_incident(event), at=event.occurred_at)


def stakeholders_subscribe() -> None:
    from incidents.events import INCIDENT_CREATED, INCIDENT_SEVERITY_CHANGED

    for name in (INCIDENT_CREATED, INCIDENT_SEVERITY_CHANGED, INCIDENT_TRANSITIONED):
        events_subscribe(handler=STAKEHOLDER_HANDLER, event=name, callback=stakeholders_on_event)


def subscribe() -> None:
    stakeholders_subscribe()
    for name, callback in ((INCIDENT_TRANSITIONED, on_incident_transitioned),):
        events_subscribe(handler=HANDLER, event=name, callback=callback)
    for name, callback in (
        (INCIDENT_TRANSITIONED, clock_on_incident_transitioned),
        (INCIDENT_UPDATED, clock_on_incident_updated),
    ):
        events_subscribe(handler=CLOCK_HANDLER, event=name, callback=callback)
    for name in (
        INCIDENT_CREATED,
        INCIDENT_SEVERITY_CHANGED,
        INCIDENT_UPDATED,
        INCIDENT_TRANSITIONED,
    ):
        events_subscribe(
            handler=DIRECT_CONTACT_HANDLER, event=name, callback=direct_contact_on_event
        )
    events_subscribe(
        handler=DIRECT_CONTACT_HANDLER,
        event=INCIDENT_ROLE_ASSIGNED,
        callback=direct_contact_on_role_assigned,
    )
