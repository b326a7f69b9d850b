"""Domain signals of the incident core.

Each event is announced twice by :func:`announce`:

* inside the transaction that caused it, through ``incident_event_in_transaction`` with the
  event's name, for receivers whose writes must commit or roll back with the event (the
  notification outbox). An exception there rolls the whole action back: nothing half-happens.
* after that transaction commits, through the event's own signal (``incident_created``, ...),
  for reactions that may run later and must not see rolled-back events.

Other apps (escalation, communications, reviews) connect receivers in ``AppConfig.ready``; the
core never imports them. Payloads carry ids, not instances, plus ``actor_id`` and ``source``.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

# incident_id, actor_id, source, paging (one of incidents.services.incidents.PAGING_MODES)
incident_created = Signal()
# incident_id, action, from_status, to_status, actor_id, source
incident_transitioned = Signal()
# incident_id, old_severity, new_severity, actor_id, source
incident_severity_changed = Signal()
# incident_id, role_key, user_id, actor_id, source
incident_role_assigned = Signal()
# incident_id, target ("response" or "resolution"), due_at (ISO 8601)
incident_sla_breached = Signal()
# incident_id, fields (names changed by incident_update), previous_detected_at (ISO 8601),
# actor_id, source
incident_updated = Signal()

# event (one of EVENT_NAMES' values) plus that event's payload; sent inside the transaction.
incident_event_in_transaction = Signal()

EVENT_NAMES = {
    incident_created: "incident_created",
    incident_transitioned: "incident_transitioned",
    incident_severity_changed: "incident_severity_changed",
    incident_role_assigned: "incident_role_assigned",
    incident_sla_breached: "incident_sla_breached",
    incident_updated: "incident_updated",
}


def announce(signal: Signal, **payload: object) -> None:
    """Announce an event: in the current transaction now, on its own signal after commit.

    A rolled-back action announces nothing after commit. After-commit receivers run robustly:
    one failing receiver is logged and does not stop the others.
    """
    incident_event_in_transaction.send(sender="incidents", event=EVENT_NAMES[signal], **payload)

    def send() -> None:
        signal.send_robust(sender="incidents", **payload)

    transaction.on_commit(send, robust=True)
