"""Changing an incident's severity: the SLA clocks, impact, urgency and priority that follow it."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from ..errors import InvalidInput
from ..events import INCIDENT_SEVERITY_CHANGED, announce
from ..models import Incident, Kind, SeverityLevel, Status
from ..timeformat import when
from .common import (
    apply_sla,
    audited_save,
    priority_for,
    require_perm,
    severity_levels,
    timeline_record,
)
from .incidents import FINAL_STATUSES, actor_id, clean_reason
from .policy import (
    incident_policy_get,
    priority_mismatch,
    severity_defaults,
    severity_reason_required,
)
from .sla import sla_breaches_record_due


def severity_resolve(value: int | SeverityLevel) -> SeverityLevel:
    if isinstance(value, SeverityLevel):
        return value
    try:
        number = int(value)
        known = severity_levels().get(number)
        if known is not None:
            return known
        # Not among the levels kept: added behind the ORM's back, perhaps.
        return SeverityLevel.objects.get(level=number)
    except (SeverityLevel.DoesNotExist, TypeError, ValueError):
        known = ", ".join(str(v) for v in SeverityLevel.objects.values_list("level", flat=True))
        raise InvalidInput(
            {"severity": f"Unknown severity {value!r}; known levels: {known}."}
        ) from None


@transaction.atomic
def incident_change_severity(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    severity: int | SeverityLevel,
    reason: str = "",
    priority_reason: str = "",
    check_priority: bool = True,
    follow_defaults: bool = True,
) -> Incident:
    """Change severity (§4.2 step 2 "update severity if necessary"); the SLA clocks still
    running are recomputed (a running clock already past its due time has its breach recorded
    first), a stopped clock keeps its due time.

    A person must give a ``reason`` when the policy's ``severity_reason`` asks for one (by
    default: when the severity is lowered). Impact and urgency still at the old severity's
    defaults follow to the new severity's (the priority with them, on the timeline); set by
    hand, they stay, and a person whose priority then no longer goes with the severity must
    confirm it with ``priority_reason`` (``check_priority=False``: the caller checked;
    ``follow_defaults=False``: the caller set impact and urgency in the same edit).
    Refusals (InvalidInput) save nothing.

    Allowed while the incident is active: once resolved the severity is frozen with the
    clocks it set (reopening makes it changeable again). Writes a timeline entry and sends
    ``incident_severity_changed`` after commit. Idempotent: the same severity is a no-op.
    """
    require_perm(actor, "incidents.change_incident_severity", "change the severity of")
    level = severity_resolve(severity)
    # of=("self",): lock the incident, not the shared severity row joined in.
    locked = (
        Incident.objects.select_for_update(of=("self",))
        .select_related("severity")
        .get(pk=incident.pk)
    )
    old = locked.severity
    if old.level == level.level:
        return locked
    if locked.status == Status.RESOLVED:
        raise InvalidInput(
            {
                "severity": "The incident is resolved: its severity is frozen with the SLA "
                "clocks it set. Reopen the incident to change it."
            }
        )
    if locked.status in FINAL_STATUSES:
        raise InvalidInput(
            {"severity": f"The incident is {locked.status}; its severity can no longer change."}
        )
    reason = clean_reason("severity_reason", reason)
    priority_reason = clean_reason("priority_reason", priority_reason)
    policy = incident_policy_get()
    if (
        actor is not None
        and not reason
        and severity_reason_required(old=old.level, new=level.level, policy=policy)
    ):
        change = "lowering" if level.level > old.level else "changing"
        raise InvalidInput(
            {
                "severity_reason": f"Give a reason for {change} the severity from Sev "
                f"{old.level} to Sev {level.level}; it is written on the timeline."
            }
        )
    old_priority = locked.priority
    if follow_defaults and (locked.impact, locked.urgency) == severity_defaults(old):
        locked.impact, locked.urgency = severity_defaults(level)
        locked.priority = priority_for(impact=locked.impact, urgency=locked.urgency)
    elif check_priority and actor is not None and not priority_reason:
        mismatch = priority_mismatch(
            severity=level,
            priority=locked.priority,
            impact=locked.impact,
            urgency=locked.urgency,
            policy=policy,
        )
        if mismatch:
            raise InvalidInput({"priority_reason": mismatch})
    sla_breaches_record_due(incident=locked, now=timezone.now())
    locked.severity = level
    apply_sla(locked, level, running_only=True)
    audited_save(locked, actor=actor, reason=f"severity {old.level} → {level.level}")
    direction = "raised" if level.level < old.level else "lowered"
    message = (
        f"Severity {direction}: Sev {old.level} → Sev {level.level} ({level.name}). "
        f"Response due {when(locked.response_due_at)}, "
        f"resolution due {when(locked.resolution_due_at)}."
    )
    if reason:
        message += f" Reason: {reason}"
    timeline_record(
        incident=locked,
        kind=Kind.SEVERITY,
        source=source,
        actor=actor,
        message=message,
        data={"from": old.level, "to": level.level, "reason": reason},
    )
    if locked.priority != old_priority:
        timeline_record(
            incident=locked,
            kind=Kind.PRIORITY,
            source=source,
            actor=actor,
            message=(
                f"Priority changed P{old_priority} → P{locked.priority}: impact "
                f"{locked.impact} × urgency {locked.urgency} follow Sev {level.level}."
            ),
            data={"from": old_priority, "to": locked.priority, "severity": level.level},
        )
    elif priority_reason:
        timeline_record(
            incident=locked,
            kind=Kind.PRIORITY,
            source=source,
            actor=actor,
            message=f"Priority P{locked.priority} kept at Sev {level.level}: {priority_reason}",
            data={"from": old_priority, "to": locked.priority, "reason": priority_reason},
        )
    announce(
        INCIDENT_SEVERITY_CHANGED,
        incident=locked,
        old_severity=old.level,
        new_severity=level.level,
        actor_id=actor_id(actor),
        source=source,
    )
    return locked


__all__ = ["incident_change_severity", "severity_resolve"]
