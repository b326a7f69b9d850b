"""Domain signals of the incident core, sent after the transaction that caused them commits.

Other apps (escalation, communications, reviews) connect receivers in their ``AppConfig.ready``;
the core never imports them. Every signal carries ids, not instances, plus the action's
``actor_id`` and ``source``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.dispatch import Signal

# incident_id, actor_id, source
incident_created = Signal()
# incident_id, action, from_status, to_status, actor_id, source
incident_transitioned = Signal()
# incident_id, old_severity, new_severity, actor_id, source
incident_severity_changed = Signal()
# incident_id, role_key, user_id, actor_id, source
incident_role_assigned = Signal()
# incident_id, target ("response" or "resolution"), due_at (ISO 8601)
incident_sla_breached = Signal()


def announce(signal: Signal, **payload: object) -> None:
    """Send ``signal`` once the current transaction commits (at once outside a transaction).

    A rolled-back action announces nothing. Receivers are run robustly: one failing receiver is
    logged and does not stop the others.
    """
    send: Callable[[], object] = lambda: signal.send_robust(sender="incidents", **payload)  # noqa: E731
    transaction.on_commit(send, robust=True)
