"""Writes of the escalation app. Admin, API, receivers and tasks call these and nothing else."""

from .delivery import notification_retry, notification_send, notifications_requeue
from .outbox import notification_enqueue

__all__ = [
    "notification_enqueue",
    "notification_retry",
    "notification_send",
    "notifications_requeue",
]

# Paging, acknowledge links and escalation timers (initial notification, ack timer, matrix).
from .ack_links import ack_link_make, ack_link_read, ack_link_use
from .paging import incident_page_assignee, incident_page_team, recipients_notify
from .policy import escalation_step_create, escalation_step_delete, escalation_step_update
from .snapshot import policy_snapshot_take
from .timers import (
    SWEEP_HEARTBEAT_KEY,
    escalation_advance,
    escalation_on_severity_change,
    escalation_on_transition,
    escalation_start,
    escalation_sweep,
)

__all__ += [
    "SWEEP_HEARTBEAT_KEY",
    "ack_link_make",
    "ack_link_read",
    "ack_link_use",
    "escalation_advance",
    "escalation_on_severity_change",
    "escalation_on_transition",
    "escalation_start",
    "escalation_step_create",
    "escalation_step_delete",
    "escalation_step_update",
    "escalation_sweep",
    "incident_page_assignee",
    "incident_page_team",
    "policy_snapshot_take",
    "recipients_notify",
]
