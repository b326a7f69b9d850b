"""Edits that staff make as one change but that several services carry out: an incident's
details together with its severity, and several role assignments at once.

The admin's change form and the API's PATCH/PUT call these, so "both apply or neither does"
and the order of the timeline entries are decided once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from ..models import Incident, Level, ResponseRole, RoleAssignment, Status
from .incidents import incident_update
from .lifecycle import incident_close
from .policy import priority_check, severity_defaults
from .roles import incident_role_assign
from .severity import incident_change_severity, severity_resolve


@transaction.atomic
def incident_edit(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    changes: Mapping[str, Any],
    severity_reason: str = "",
    correction_reason: str = "",
    priority_reason: str = "",
) -> Incident:
    """Edit an incident's details and, when ``changes`` holds ``severity``, its severity.

    The details (any of ``EDITABLE_FIELDS``) go through :func:`incident_update` first, with
    ``correction_reason`` (required to correct a closed or cancelled incident), then the
    severity through :func:`incident_change_severity` with ``severity_reason`` (each checks
    its own permission and status rules and writes its own timeline entry and event). The
    priority is checked against the severity once, on the final pair (a new severity with the
    impact and urgency given in the same edit): a pair that does not go with it needs
    ``priority_reason``. One transaction: a refusal of either (InvalidInput, ActionForbidden)
    undoes the other. Idempotent: values equal to the current ones write nothing. Returns the
    incident as saved.
    """
    details = dict(changes)
    severity = details.pop("severity", None)
    _priority_precheck(
        incident=incident,
        actor=actor,
        details=details,
        severity=severity,
        reason=priority_reason,
    )
    if details:
        incident = incident_update(
            incident=incident,
            actor=actor,
            source=source,
            correction_reason=correction_reason,
            priority_reason=priority_reason,
            check_priority=False,
            **details,
        )
    if severity is not None:
        incident = incident_change_severity(
            incident=incident,
            actor=actor,
            source=source,
            severity=severity,
            reason=severity_reason,
            priority_reason=priority_reason,
            check_priority=False,
            follow_defaults="impact" not in details and "urgency" not in details,
        )
    return incident


def _priority_precheck(
    *, incident: Incident, actor: Any, details: Mapping[str, Any], severity: Any, reason: str
) -> None:
    """Refuse, before anything is written, a final severity × priority pair a person sets
    without the reason it needs (InvalidInput on ``priority_reason``)."""
    if actor is None or (reason or "").strip():
        return
    if "impact" not in details and "urgency" not in details and severity is None:
        return
    current = Incident.objects.select_related("severity").get(pk=incident.pk)
    if current.status in (Status.CLOSED, Status.CANCELLED):
        return  # the services refuse these edits, naming the fields
    old_level = current.severity
    level = old_level if severity is None else severity_resolve(severity)
    impact = details.get("impact", current.impact)
    urgency = details.get("urgency", current.urgency)
    untouched = "impact" not in details and "urgency" not in details
    if untouched and level.level == old_level.level:
        return  # nothing priority-related changes
    if untouched and (impact, urgency) == severity_defaults(old_level):
        # Defaults follow a new severity (incident_change_severity): nothing to confirm.
        return
    if impact not in Level.values or urgency not in Level.values:
        return  # the service names the bad value
    priority_check(actor=actor, severity=level, impact=impact, urgency=urgency, reason="")


@transaction.atomic
def incident_close_with_report(
    *, incident: Incident, actor: Any, source: str, report: Mapping[str, Any]
) -> Incident:
    """Complete the report and close the incident, as one change.

    ``report`` holds report fields (any of ``EDITABLE_FIELDS``, in practice summary, root
    cause, resolution, business impact and lessons learned) to save through
    :func:`incident_update`; then :func:`incident_close` runs its permission, status and guard
    checks on the saved values. One transaction: when the close is refused (GuardFailed,
    TransitionNotAllowed, ActionForbidden) the report fields are not saved either. Idempotent:
    closing a closed incident with an unchanged report writes nothing.
    """
    current = Incident.objects.get(pk=incident.pk)
    changes = {name: value for name, value in report.items() if getattr(current, name) != value}
    if changes and current.status != Status.CLOSED:
        incident = incident_update(incident=current, actor=actor, source=source, **changes)
    return incident_close(incident=incident, actor=actor, source=source)


def _role_key(role: ResponseRole | str) -> str:
    return role.key if isinstance(role, ResponseRole) else role


def _assign_all(
    *, incident: Incident, actor: Any, source: str, wanted: Mapping[str, Any]
) -> dict[str, RoleAssignment | None]:
    return {
        role_key: incident_role_assign(
            incident=incident, role=role_key, user=user, actor=actor, source=source
        )
        for role_key, user in wanted.items()
    }


@transaction.atomic
def incident_roles_assign(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    assignments: Mapping[ResponseRole | str, Any],
) -> dict[str, RoleAssignment | None]:
    """Assign (a user) or unassign (``None``) each role named; the other roles keep their
    holders. Each change goes through :func:`incident_role_assign` (permission, timeline
    entry, event). One transaction: a refusal of any undoes them all. Idempotent: naming the
    current holder changes nothing. Returns role key → assignment (``None`` when unassigned).
    """
    wanted = {_role_key(role): user for role, user in assignments.items()}
    return _assign_all(incident=incident, actor=actor, source=source, wanted=wanted)


@transaction.atomic
def incident_roles_replace(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    assignments: Mapping[ResponseRole | str, Any],
) -> dict[str, RoleAssignment | None]:
    """Set all of an incident's role assignments: each role named gets its user (``None``
    unassigns it) and every role held but not named is unassigned (first, in role order).

    The incident is locked while the held roles are read, so a concurrent assignment cannot
    slip in between. Otherwise as :func:`incident_roles_assign`: one transaction, idempotent.
    """
    Incident.objects.select_for_update().only("pk").get(pk=incident.pk)
    held = RoleAssignment.objects.filter(incident=incident).values_list("role__key", flat=True)
    wanted = {
        **dict.fromkeys(held),
        **{_role_key(role): user for role, user in assignments.items()},
    }
    return _assign_all(incident=incident, actor=actor, source=source, wanted=wanted)


__all__ = ["incident_edit", "incident_roles_assign", "incident_roles_replace"]
