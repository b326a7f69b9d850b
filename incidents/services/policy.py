"""The incident policy (one row): reading it, changing it, and the rules it drives for the
incident services — the priority a severity expects, when a priority needs a confirmation,
when a severity change needs a reason, and who may hold a response role."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..errors import InvalidInput
from ..models import IncidentPolicy, Level, SeverityLevel, SeverityReasonRule
from .catalog import require_policy_perm, validated_save
from .common import priority_for

POLICY_FIELDS = (
    "declarer_is_incident_manager",
    "acknowledger_takes_role",
    "severity_reason",
    "priority_tolerance",
)
# Holding a response role means acting on the incident; the read-only Viewer group (and anyone
# else who cannot add to a timeline) can read an incident but not act on it.
ROLE_HOLDER_PERMISSION = "incidents.add_timelineentry"


def incident_policy_get() -> IncidentPolicy:
    """The policy row (created with its defaults if a database somehow lacks it)."""
    policy, _ = IncidentPolicy.objects.get_or_create(pk=1)
    return policy


@transaction.atomic
def incident_policy_update(*, actor: Any, source: str, **changes: Any) -> IncidentPolicy:
    """Change the incident policy (any of ``POLICY_FIELDS``; the others keep their values).
    Needs ``incidents.change_incidentpolicy``. Saved with a history record naming the actor
    and the fields. Idempotent: the same values save nothing."""
    require_policy_perm(actor, "incidents.change_incidentpolicy", "change the incident policy")
    unknown = sorted(set(changes) - set(POLICY_FIELDS))
    if unknown:
        raise InvalidInput({name: "Not a field of the incident policy." for name in unknown})
    incident_policy_get()
    locked = IncidentPolicy.objects.select_for_update().get(pk=1)
    changed = [name for name in POLICY_FIELDS if name in changes]
    changed = [name for name in changed if getattr(locked, name) != changes[name]]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    validated_save(locked, actor=actor, reason=f"policy changed ({source}): {', '.join(changed)}")
    return locked


def severity_defaults(severity: SeverityLevel) -> tuple[str, str]:
    """(impact, urgency) a new incident of ``severity`` starts with."""
    return (
        severity.default_impact or Level.MEDIUM,
        severity.default_urgency or Level.MEDIUM,
    )


def priority_expected(severity: SeverityLevel) -> int:
    """The priority ``severity`` expects: its default impact × urgency in the matrix."""
    impact, urgency = severity_defaults(severity)
    return priority_for(impact=impact, urgency=urgency)


def priority_mismatch(
    *,
    severity: SeverityLevel,
    priority: int,
    impact: str,
    urgency: str,
    policy: IncidentPolicy | None = None,
) -> str:
    """Why ``priority`` does not go with ``severity`` ("" when it does).

    A priority is incoherent when it is more than the policy's ``priority_tolerance`` steps
    away, either way, from the priority the severity expects (Sev 1 expects P1: with the
    default tolerance of 1, P2 is fine and P3 or P4 needs a confirmation; Sev 4 expects P4,
    so P1 or P2 does)."""
    policy = policy or incident_policy_get()
    expected = priority_expected(severity)
    if abs(priority - expected) <= policy.priority_tolerance:
        return ""
    default_impact, default_urgency = severity_defaults(severity)
    return (
        f"Sev {severity.level} ({severity.name}) goes with P{expected} (impact "
        f"{default_impact} × urgency {default_urgency}), but impact {impact} × urgency "
        f"{urgency} gives P{priority}. Set impact and urgency to match the severity, or "
        f"confirm P{priority} with a reason."
    )


def priority_check(
    *,
    actor: Any,
    severity: SeverityLevel,
    impact: str,
    urgency: str,
    reason: str,
) -> int:
    """The priority of ``impact`` × ``urgency``, refused (InvalidInput on ``priority_reason``)
    when a person sets a pair that does not go with ``severity`` without a reason. Vigil
    itself (``actor`` None: alerts, heartbeats) is never asked: it records what the sender
    said and the timeline shows it."""
    priority = priority_for(impact=impact, urgency=urgency)
    if actor is None or reason:
        return priority
    mismatch = priority_mismatch(
        severity=severity, priority=priority, impact=impact, urgency=urgency
    )
    if mismatch:
        raise InvalidInput({"priority_reason": mismatch})
    return priority


def severity_reason_required(*, old: int, new: int, policy: IncidentPolicy | None = None) -> bool:
    """Whether a person changing severity ``old`` → ``new`` must give a reason. Level 1 is
    the most severe, so a larger number is a drop."""
    rule = (policy or incident_policy_get()).severity_reason
    if rule == SeverityReasonRule.ALWAYS:
        return True
    if rule == SeverityReasonRule.DROPS:
        return new > old
    return False


def can_hold_response_role(user: Any) -> bool:
    """Whether ``user`` may hold a response role: an active user who is not read-only. A
    read-only user (a Viewer) belongs to groups none of which lets them act on incidents
    (``ROLE_HOLDER_PERMISSION``) and holds no such permission of their own; a user in no
    group at all is left to the administrator's judgement."""
    if not user.is_active:
        return False
    if user.has_perm(ROLE_HOLDER_PERMISSION):
        return True
    return not user.groups.exists()


def response_role_refusal(user: Any, role_name: str) -> str:
    """The refusal for assigning ``user`` (who cannot hold a role) to ``role_name``."""
    name = user.get_full_name() or user.get_username()
    return (
        f"{name} has read-only access (a Viewer) and cannot act on incidents, so cannot hold "
        f"the {role_name} role. Choose someone in a response role group, or ask an "
        "administrator to add them to one."
    )


__all__ = [
    "POLICY_FIELDS",
    "ROLE_HOLDER_PERMISSION",
    "can_hold_response_role",
    "incident_policy_get",
    "incident_policy_update",
    "priority_check",
    "priority_expected",
    "priority_mismatch",
    "response_role_refusal",
    "severity_defaults",
    "severity_reason_required",
]
