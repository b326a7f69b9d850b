"""The incident events apps can follow, and the registry of their handlers: which app's
callback runs on which event. Apps subscribe in ``AppConfig.ready``; the core never imports
them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..models.events import IncidentEvent

# payload: paging (one of incidents.services.creation.PAGING_MODES)
INCIDENT_CREATED = "incident_created"
# payload: action, from_status, to_status
INCIDENT_TRANSITIONED = "incident_transitioned"
# payload: old_severity, new_severity
INCIDENT_SEVERITY_CHANGED = "incident_severity_changed"
# payload: role_key, user_id (None when the role was cleared)
INCIDENT_ROLE_ASSIGNED = "incident_role_assigned"
# payload: target ("response" or "resolution"), due_at (ISO 8601)
INCIDENT_SLA_BREACHED = "incident_sla_breached"
# payload: fields (names changed), previous_detected_at (ISO 8601)
INCIDENT_UPDATED = "incident_updated"

EVENT_NAMES = (
    INCIDENT_CREATED,
    INCIDENT_TRANSITIONED,
    INCIDENT_SEVERITY_CHANGED,
    INCIDENT_ROLE_ASSIGNED,
    INCIDENT_SLA_BREACHED,
    INCIDENT_UPDATED,
)


@dataclass
class Handler:
    """A follower of incidents: a stable name (recorded on every EventHandling row, so renaming
    it re-runs nothing only if the old name is kept) and one callback per event name."""

    name: str
    callbacks: dict[str, Callable[[IncidentEvent], None]] = field(default_factory=dict)


_handlers: dict[str, Handler] = {}


def events_subscribe(
    *, handler: str, event: str, callback: Callable[[IncidentEvent], None]
) -> None:
    """Subscribe ``callback`` to ``event`` under the handler name ``handler`` (call from
    ``AppConfig.ready``; subscribing again replaces the callback). The callback receives the
    :class:`IncidentEvent` row and runs inside the handler's own transaction."""
    if event not in EVENT_NAMES:
        raise ValueError(f"Unknown incident event {event!r}; known: {', '.join(EVENT_NAMES)}.")
    if not handler or len(handler) > 100:
        raise ValueError("A handler name of 1 to 100 characters is required.")
    _handlers.setdefault(handler, Handler(handler)).callbacks[event] = callback


def events_unsubscribe(*, handler: str) -> None:
    """Remove every subscription of the handler name ``handler`` (a no-op if it has none)."""
    _handlers.pop(handler, None)


def subscribed_handlers(event: str) -> list[Handler]:
    """The handlers subscribed to ``event``, in name order."""
    return [h for name, h in sorted(_handlers.items()) if event in h.callbacks]
