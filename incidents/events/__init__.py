"""Durable incident events and the apps that follow them.

The core records what happened to an incident as an :class:`IncidentEvent` row, written by
:func:`announce` in the transaction that caused it, and nothing else runs there. Apps follow
incidents by subscribing *handlers* in ``AppConfig.ready``::

    events_subscribe(handler="escalation", event=INCIDENT_CREATED, callback=on_created)

The core never imports them. After the causing transaction commits, the incident's events are
*followed* (:func:`incident_events_follow`, run by a task kicked on commit and by a sweep that
finds kicks that were lost):

* each subscribed handler runs **once per (event, handler)**, in its own transaction, which also
  writes the :class:`EventHandling` row, UNIQUE (event, handler): the handler's writes and the
  record that it ran commit together, however many dispatchers run at once;
* in event order per incident for each handler: a handler sees an incident's
  ``incident_created`` before its ``incident_transitioned``. A later event waits while the
  same handler has an earlier event of the incident unfinished;
* a failing handler is rolled back (its writes only) and retried with backoff; it does not stop
  the other handlers of the event, nor other incidents. After its last attempt it is given up:
  a timeline entry on the incident and an alert on the admin index say so, and the events
  after it go on;
* a handler can delay its own reaction, never roll back or block an incident action.

Events, outbound notifications and inbound deliveries share one claim / lease / requeue
mechanism (:mod:`incidents.queue`).
"""

from .following import FollowResult, event_incident, incident_events_follow
from .recording import announce, default_queue, urgent_queue
from .recovery import event_handling_retry, events_requeue
from .registry import (
    EVENT_NAMES,
    INCIDENT_CREATED,
    INCIDENT_ROLE_ASSIGNED,
    INCIDENT_SEVERITY_CHANGED,
    INCIDENT_SLA_BREACHED,
    INCIDENT_TRANSITIONED,
    INCIDENT_UPDATED,
    events_subscribe,
    events_unsubscribe,
    subscribed_handlers,
)

__all__ = [
    "EVENT_NAMES",
    "INCIDENT_CREATED",
    "INCIDENT_ROLE_ASSIGNED",
    "INCIDENT_SEVERITY_CHANGED",
    "INCIDENT_SLA_BREACHED",
    "INCIDENT_TRANSITIONED",
    "INCIDENT_UPDATED",
    "FollowResult",
    "announce",
    "default_queue",
    "event_handling_retry",
    "event_incident",
    "events_requeue",
    "events_subscribe",
    "events_unsubscribe",
    "incident_events_follow",
    "subscribed_handlers",
    "urgent_queue",
]
