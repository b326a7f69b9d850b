"""Editing an incident's details: the fields that may change, the checks of the values given
for them (shared with creating an incident), what may still change once the incident is resolved,
closed or cancelled, and notes on the timeline."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..errors import InvalidInput
from ..events import INCIDENT_UPDATED, announce
from ..models import (
    ACTIVE_STATUSES,
    CLOSE_REQUIRED_FIELDS,
    DetectionSource,
    Incident,
    Kind,
    Level,
    Service,
    Source,
    Status,
    missing_fields,
    timestamp_order_errors,
)
from .common import apply_sla, audited_save, require_perm, timeline_record
from .policy import priority_check
from .sla import sla_breaches_record_due

# Clocks of monitoring senders drift; a detection time this far ahead of ours is still "now".
CLOCK_SKEW = timedelta(minutes=5)
NOTE_MAX_LENGTH = 20_000

EDITABLE_FIELDS = (
    "title",
    "summary",
    "impact",
    "urgency",
    "detection_source",
    "services",
    "customer_facing",
    "affected_users",
    "business_impact",
    "root_cause",
    "resolution",
    "lessons_learned",
    "impact_started_at",
    "detected_at",
)
TEXT_FIELDS = ("summary", "business_impact", "root_cause", "resolution", "lessons_learned")

# What may change after resolution and closure (README "What may change after an incident is
# resolved or closed"). The timing facts drive the SLA clocks: once the incident is resolved
# both clocks have stopped, and a stopped clock is never recomputed, so they no longer change
# (nor does the severity, see incident_change_severity). A closed or cancelled incident is a
# record: only its report may be corrected, by whoever may close incidents, with a reason.
TIMING_FIELDS = {"impact_started_at": "impact start time", "detected_at": "detection time"}
CORRECTABLE_FIELDS = (
    "summary",
    "affected_users",
    "business_impact",
    "root_cause",
    "resolution",
    "lessons_learned",
)
FINAL_STATUSES = (Status.CLOSED, Status.CANCELLED)
CORRECTION_PERMISSION = "incidents.close_incident"
REASON_MAX_LENGTH = 2000


def check_choice(field: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise InvalidInput({field: f"{value!r} is not one of: {', '.join(choices)}."})


def services_resolve(values: Iterable[Service | str]) -> list[Service]:
    items = list(values)
    slugs = [v for v in items if not isinstance(v, Service)]
    # Services given as rows (alert routing) need no lookup, nor its query building.
    found = {s.slug: s for s in Service.objects.filter(slug__in=slugs)} if slugs else {}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise InvalidInput({"services": f"Unknown service(s): {', '.join(map(str, missing))}."})
    return [v if isinstance(v, Service) else found[v] for v in items]


def reported_time(field: str, value: Any, now: datetime) -> datetime | None:
    """A time reported by a person or a sender: aware, and not in the future.

    A time up to ``CLOCK_SKEW`` ahead is taken as now, so a sender's fast clock cannot leave a
    detection time after the acknowledgement that follows it (which would make every later
    edit of the incident fail the timestamp order check).
    """
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInput({field: "Give a date and time."})
    if timezone.is_naive(value):
        raise InvalidInput({field: "Give the time with its time zone."})
    if value > now + CLOCK_SKEW:
        raise InvalidInput({field: "Cannot be in the future."})
    return min(value, now)


def check_count(field: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInput({field: "Give a whole number of zero or more, or leave it empty."})


def validate_times(incident: Incident, now: datetime) -> None:
    errors = timestamp_order_errors(
        {
            "impact_started_at": incident.impact_started_at,
            "detected_at": incident.detected_at,
            "acknowledged_at": incident.acknowledged_at,
            "mitigated_at": incident.mitigated_at,
            "resolved_at": incident.resolved_at,
            "closed_at": incident.closed_at,
        }
    )
    if errors:
        raise InvalidInput(errors)


def clean_reason(field: str, value: str | None) -> str:
    reason = (value or "").strip()
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput({field: f"Reasons are limited to {REASON_MAX_LENGTH} characters."})
    return reason


@transaction.atomic
def incident_update(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    correction_reason: str = "",
    priority_reason: str = "",
    check_priority: bool = True,
    **changes: Any,
) -> Incident:
    """Edit an incident's descriptive fields (not status or severity; those have services).

    Priority is recomputed when impact or urgency changes; a person whose new pair does not go
    with the severity must give ``priority_reason`` (InvalidInput on it otherwise, nothing
    saved; ``check_priority=False`` when the caller checked the final pair itself, as
    ``incident_edit`` does). The priority change is written on the timeline: who, from → to
    and the reason. A corrected detection time moves
    the SLA clocks still running (a stopped clock keeps its due time, after any breach it has
    already run into is recorded). Once the incident is resolved its timing facts
    (``TIMING_FIELDS``) no longer change. A closed or cancelled incident takes only
    corrections of ``CORRECTABLE_FIELDS``, by holders of ``CORRECTION_PERMISSION``, with a
    ``correction_reason``; the fields closing required stay filled. The reason, when given
    (in any status), is written with the timeline entry and the history record. Refusals
    (InvalidInput, ActionForbidden) change nothing. Writes one timeline entry naming the
    changed fields. Idempotent: unchanged values write nothing, whatever the status.
    """
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidInput({name: "This field cannot be changed here." for name in unknown})
    require_perm(actor, "incidents.change_incident", "edit")
    reason = (correction_reason or "").strip()
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput(
            {"correction_reason": f"Reasons are limited to {REASON_MAX_LENGTH} characters."}
        )
    locked = Incident.objects.select_for_update().get(pk=incident.pk)
    now = timezone.now()
    if "detected_at" in changes and locked.is_active:
        # The clocks still running move with the detection time; one already past its due
        # time has its breach recorded first, as the sweep would.
        sla_breaches_record_due(incident=locked, now=now)

    changed: list[str] = []
    new_services = None
    previous_detected_at = locked.detected_at
    for name, value in changes.items():
        if name == "services":
            new_services = services_resolve(value)
            current = set(locked.services.values_list("pk", flat=True))
            if current != {s.pk for s in new_services}:
                changed.append(name)
            continue
        if name in ("impact", "urgency"):
            check_choice(name, value, Level.values)
        if name == "detection_source":
            check_choice(name, value, DetectionSource.values)
        if name == "title":
            value = (value or "").strip()[:200]
            if not value:
                raise InvalidInput({"title": "A title is required."})
        if name in TEXT_FIELDS and value is None:
            value = ""
        if name == "detected_at" and value is None:
            raise InvalidInput({"detected_at": "The detection time is required."})
        if name in ("impact_started_at", "detected_at"):
            value = reported_time(name, value, now)
        if name == "affected_users":
            check_count(name, value)
        if getattr(locked, name) != value:
            setattr(locked, name, value)
            changed.append(name)
    if not changed:
        return locked
    correction = locked.status in FINAL_STATUSES
    _check_after_resolution(locked, changed, actor=actor, reason=reason)

    validate_times(locked, now)
    old_priority = locked.priority
    priority_reason = clean_reason("priority_reason", priority_reason)
    if "impact" in changed or "urgency" in changed:
        locked.priority = priority_check(
            actor=actor if check_priority else None,
            severity=locked.severity,
            impact=locked.impact,
            urgency=locked.urgency,
            reason=priority_reason,
        )
    if "detected_at" in changed:
        apply_sla(locked, locked.severity, running_only=True)
    if new_services is not None and "services" in changed:
        # Left to the save below, so one history record holds the fields and the services
        # together, with the actor and reason (the m2m signal would record them without).
        locked.skip_history_when_saving = True
        try:
            locked.services.set(new_services)
        finally:
            del locked.skip_history_when_saving
    verb = "corrected" if correction else "updated"
    audited_save(
        locked,
        actor=actor,
        reason=f"{verb} " + ", ".join(changed) + (f": {reason}" if reason else ""),
    )

    labels = [Incident._meta.get_field(name).verbose_name for name in changed if name != "services"]
    if "services" in changed:
        labels.append("affected services")
    if correction:
        when = "closure" if locked.status == Status.CLOSED else "cancellation"
        message = f"Corrected after {when}: " + ", ".join(labels) + f". Reason: {reason}"
    else:
        message = "Updated " + ", ".join(labels) + "." + (f" Reason: {reason}" if reason else "")
    data: dict[str, Any] = {"fields": changed}
    if reason:
        data["reason"] = reason
    if correction:
        data["correction"] = True
    timeline_record(
        incident=locked,
        kind=Kind.UPDATE,
        source=source,
        actor=actor,
        message=message,
        data=data,
    )
    if locked.priority != old_priority:
        priority_message = f"Priority changed P{old_priority} → P{locked.priority}."
        priority_data: dict[str, Any] = {"from": old_priority, "to": locked.priority}
        if priority_reason:
            priority_message += f" Reason: {priority_reason}"
            priority_data["reason"] = priority_reason
        timeline_record(
            incident=locked,
            kind=Kind.PRIORITY,
            source=source,
            actor=actor,
            message=priority_message,
            data=priority_data,
        )
    announce(
        INCIDENT_UPDATED,
        incident=locked,
        fields=changed,
        previous_detected_at=previous_detected_at.isoformat(),
        actor_id=actor_id(actor),
        source=source,
    )
    return locked


def _field_label(name: str) -> str:
    if name == "services":
        return "affected services"
    return str(Incident._meta.get_field(name).verbose_name)


def _check_after_resolution(
    incident: Incident, changed: list[str], *, actor: Any, reason: str
) -> None:
    """Refuse what may no longer change in the incident's status (InvalidInput naming each
    field, or ActionForbidden for a correction by someone who may not close incidents)."""
    status = incident.status
    if status in ACTIVE_STATUSES:
        return
    errors: dict[str, str] = {}
    for name in changed:
        label = _field_label(name).capitalize()
        if name in TIMING_FIELDS:
            errors[name] = (
                f"The incident is {status}: its SLA clocks have stopped and their results are "
                f"final, so its {TIMING_FIELDS[name]} no longer changes."
            )
        elif status in FINAL_STATUSES and name not in CORRECTABLE_FIELDS:
            errors[name] = (
                f"{label} of a {status} incident no longer changes; only its report "
                f"({', '.join(_field_label(f) for f in CORRECTABLE_FIELDS)}) may be corrected."
            )
    if errors:
        raise InvalidInput(errors)
    if status not in FINAL_STATUSES:
        return
    fields = ", ".join(_field_label(name) for name in changed)
    require_perm(actor, CORRECTION_PERMISSION, f"correct the {fields} of {status}")
    if status == Status.CLOSED:
        blank = [
            name for name in missing_fields(incident, CLOSE_REQUIRED_FIELDS) if name in changed
        ]
        if blank:
            raise InvalidInput(
                {name: "Required in the report of a closed incident." for name in blank}
            )
    if not reason:
        raise InvalidInput(
            {
                "correction_reason": f"A correction of a {status} incident needs a reason; "
                "it is written on the timeline with the correction."
            }
        )


@transaction.atomic
def incident_note_add(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    body: str,
    kind: str = Kind.NOTE,
) -> Any:
    """Append a note or decision to the timeline. Not idempotent: each call adds an entry."""
    require_perm(actor, "incidents.add_timelineentry", "add notes to")
    if kind not in (Kind.NOTE, Kind.DECISION):
        raise InvalidInput({"kind": "A note is either a note or a decision."})
    body = (body or "").strip()
    if not body:
        raise InvalidInput({"body": "The note is empty."})
    if len(body) > NOTE_MAX_LENGTH:
        raise InvalidInput({"body": f"Notes are limited to {NOTE_MAX_LENGTH} characters."})
    return timeline_record(incident=incident, kind=kind, source=source, actor=actor, message=body)


def actor_id(actor: Any) -> int | None:
    return actor.pk if actor is not None else None


__all__ = [
    "ACTIVE_STATUSES",
    "CORRECTABLE_FIELDS",
    "CORRECTION_PERMISSION",
    "EDITABLE_FIELDS",
    "FINAL_STATUSES",
    "TIMING_FIELDS",
    "Source",
    "actor_id",
    "check_choice",
    "check_count",
    "clean_reason",
    "incident_note_add",
    "incident_update",
    "reported_time",
    "services_resolve",
    "validate_times",
]
