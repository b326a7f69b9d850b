"""Writes of the incident core. Admin, API, webhooks and tasks call these and nothing else."""

from .creation import incident_create
from .editing import (
    incident_close_with_report,
    incident_edit,
    incident_roles_assign,
    incident_roles_replace,
)
from .incidents import incident_note_add, incident_update
from .lifecycle import (
    ACTIONS,
    incident_acknowledge,
    incident_cancel,
    incident_close,
    incident_investigate,
    incident_mitigate,
    incident_monitor,
    incident_reopen,
    incident_resolve,
    incident_transition,
)
from .roles import incident_role_assign, incident_role_claim
from .severity import incident_change_severity
from .sla import sla_breaches_record

__all__ = [
    "ACTIONS",
    "incident_acknowledge",
    "incident_cancel",
    "incident_change_severity",
    "incident_close",
    "incident_close_with_report",
    "incident_create",
    "incident_edit",
    "incident_investigate",
    "incident_mitigate",
    "incident_monitor",
    "incident_note_add",
    "incident_reopen",
    "incident_resolve",
    "incident_role_assign",
    "incident_role_claim",
    "incident_roles_assign",
    "incident_roles_replace",
    "incident_transition",
    "incident_update",
    "sla_breaches_record",
]
