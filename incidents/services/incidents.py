"""Creating incidents, editing their details and severity, notes and role assignments."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ..errors import InvalidInput
from ..events import (
    INCIDENT_CREATED,
    INCIDENT_ROLE_ASSIGNED,
    INCIDENT_SEVERITY_CHANGED,
    INCIDENT_UPDATED,
    announce,
)
from ..models import (
    ACTIVE_STATUSES,
    CLOSE_REQUIRED_FIELDS,
    DetectionSource,
    Incident,
    IncidentDaySequence,
    Kind,
    Level,
    ResponseRole,
    RoleAssignment,
    Service,
    SeverityLevel,
    Source,
    Status,
    missing_fields,
    timestamp_order_errors,
)
from ..timeformat import when
from .common import apply_sla, audited_save, priority_for, require_perm, timeline_record
from .policy import (
    can_hold_response_role,
    incident_policy_get,
    priority_check,
    priority_mismatch,
    response_role_refusal,
    severity_defaults,
    severity_reason_required,
)
from .sla import sla_breaches_record_due

# Who is told when an incident is logged, carried in the ``incident_created`` event for the
# escalation app: "team" pages the response team (§4.2 step 1); "none" pages nobody (an alert
# rule's "monitor and investigate"); "escalate" also fires the escalation matrix's first step
# at once ("escalate immediately"); "security" also notifies the security team contact.
PAGING_MODES = ("team", "none", "escalate", "security")

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


def _severity(value: int | SeverityLevel) -> SeverityLevel:
    if isinstance(value, SeverityLevel):
        return value
    try:
        return SeverityLevel.objects.get(level=int(value))
    except (SeverityLevel.DoesNotExist, TypeError, ValueError):
        known = ", ".join(str(v) for v in SeverityLevel.objects.values_list("level", flat=True))
        raise InvalidInput(
            {"severity": f"Unknown severity {value!r}; known levels: {known}."}
        ) from None


def _check_choice(field: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise InvalidInput({field: f"{value!r} is not one of: {', '.join(choices)}."})


def _services(values: Iterable[Service | str]) -> list[Service]:
    items = list(values)
    slugs = [v for v in items if not isinstance(v, Service)]
    found = {s.slug: s for s in Service.objects.filter(slug__in=slugs)}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise InvalidInput({"services": f"Unknown service(s): {', '.join(map(str, missing))}."})
    return [v if isinstance(v, Service) else found[v] for v in items]


def _allocate_number(day: Any) -> tuple[int, str]:
    """Next per-day sequence number and its ID. Must run inside the creating transaction.

    The day's counter row is locked until the incident commits, so concurrent creators queue
    on it instead of racing; the first creator of a day inserts the row, and a concurrent
    first creator that loses the insert race waits for it and reads the committed value.
    """
    table = connection.ops.quote_name(IncidentDaySequence._meta.db_table)
    with connection.cursor() as cursor:
        # One statement on every day but the first: the increment locks the row (PostgreSQL)
        # or the database (SQLite) until the incident commits.
        cursor.execute(
            f"UPDATE {table} SET last = last + 1 WHERE day = %s RETURNING last",
            [day],
        )
        row = cursor.fetchone()
    if row is not None:
        last = row[0]
    else:
        counter = None
        try:
            with transaction.atomic():
                counter = IncidentDaySequence.objects.create(day=day, last=1)
        except IntegrityError:
            counter = IncidentDaySequence.objects.select_for_update().get(day=day)
            counter.last += 1
            counter.save(update_fields=["last"])
        last = counter.last
    return last, f"INC-{day:%Y-%m%d}-{last:03d}"


def _reported_time(field: str, value: Any, now: datetime) -> datetime | None:
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


def _check_count(field: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInput({field: "Give a whole number of zero or more, or leave it empty."})


def _validate_times(incident: Incident, now: datetime) -> None:
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


def incident_create(
    *,
    actor: Any,
    source: str,
    title: str,
    severity: int | SeverityLevel,
    impact: str | None = None,
    urgency: str | None = None,
    priority_reason: str = "",
    summary: str = "",
    detection_source: str = DetectionSource.MONITORING,
    services: Iterable[Service | str] = (),
    customer_facing: bool | None = None,
    affected_users: int | None = None,
    business_impact: str = "",
    root_cause: str = "",
    resolution: str = "",
    impact_started_at: datetime | None = None,
    detected_at: datetime | None = None,
    roles: dict[str, Any] | None = None,
    paging: str = "team",
) -> Incident:
    """Log a new incident (§4.2 step 1): ID, priority from the matrix, SLA clocks, timeline.

    ``impact`` and ``urgency`` default to the severity's (policy data); the matrix decides
    the priority. A person (``actor`` not None) who sets a pair whose priority does not go
    with the severity (``policy.priority_mismatch``) must confirm it with ``priority_reason``
    (InvalidInput on ``priority_reason`` otherwise; nothing is saved); the reason is written
    on the timeline. ``customer_facing`` defaults to whether any affected service is
    customer-facing. ``roles`` maps role keys to users; someone who cannot hold a role (a
    Viewer) is refused. Logged in the admin (``source`` admin), the declarer becomes incident
    manager unless ``roles`` names one and the policy switch
    ``declarer_is_incident_manager`` is on. ``paging`` (one of ``PAGING_MODES``) says who is
    told, and travels in the ``incident_created`` event. Sends ``incident_created`` after
    commit. Not idempotent: each call logs a new incident (deduplication is the caller's,
    e.g. alert grouping).
    """
    require_perm(actor, "incidents.add_incident", "create")
    _check_choice("paging", paging, PAGING_MODES)
    title = (title or "").strip()
    if not title:
        raise InvalidInput({"title": "A title is required."})
    level = _severity(severity)
    default_impact, default_urgency = severity_defaults(level)
    impact = impact or default_impact
    urgency = urgency or default_urgency
    _check_choice("impact", impact, Level.values)
    _check_choice("urgency", urgency, Level.values)
    priority_reason = _reason("priority_reason", priority_reason)
    priority = priority_check(
        actor=actor, severity=level, impact=impact, urgency=urgency, reason=priority_reason
    )
    roles = dict(roles or {})
    _check_role_holders(roles)
    _check_choice("detection_source", detection_source, DetectionSource.values)
    service_list = _services(services)
    _check_count("affected_users", affected_users)
    now = timezone.now()
    impact_started_at = _reported_time("impact_started_at", impact_started_at, now)
    detected_at = _reported_time("detected_at", detected_at, now)

    incident = Incident(
        title=title[:200],
        summary=summary,
        severity=level,
        impact=impact,
        urgency=urgency,
        priority=priority,
        detection_source=detection_source,
        customer_facing=(
            any(s.customer_facing for s in service_list)
            if customer_facing is None
            else customer_facing
        ),
        affected_users=affected_users,
        business_impact=business_impact,
        root_cause=root_cause,
        resolution=resolution,
        impact_started_at=impact_started_at,
        detected_at=detected_at or now,
        created_by=actor,
    )
    _validate_times(incident, now)
    apply_sla(incident, level)
    # Everything above only reads and checks: a refusal leaves no trace and no broken
    # transaction behind. The writes below expect no error, so inside a caller's transaction
    # (alert processing) they add no savepoint, unless roles are assigned (their permission
    # check may still refuse); on their own they are one transaction.
    with transaction.atomic(savepoint=bool(roles)):
        incident.day = timezone.localdate(now)
        incident.sequence, incident.number = _allocate_number(incident.day)
        audited_save(incident, actor=actor, reason="created")
        if service_list:
            # A new incident has none yet: add, not set (which first reads the current ones).
            incident.services.add(*service_list)
        message = (
            f"Incident logged: Sev {level.level} ({level.name}), P{incident.priority} (impact "
            f"{impact} × urgency {urgency}), detected via "
            f"{incident.get_detection_source_display().lower()}."
        )
        data: dict[str, Any] = {"severity": level.level, "priority": incident.priority}
        if priority_reason:
            message += f" Priority P{incident.priority} confirmed: {priority_reason}"
            data["priority_reason"] = priority_reason
        timeline_record(
            incident=incident,
            kind=Kind.CREATED,
            source=source,
            actor=actor,
            message=message,
            data=data,
        )
        announce(
            INCIDENT_CREATED,
            incident=incident,
            actor_id=_id(actor),
            source=source,
            paging=paging,
        )
        for role_key, user in roles.items():
            incident_role_assign(
                incident=incident, role=role_key, user=user, actor=actor, source=source
            )
        if (
            source == Source.ADMIN
            and actor is not None
            and roles.get(ResponseRole.INCIDENT_MANAGER) is None
            and incident_policy_get().declarer_is_incident_manager
            and can_hold_response_role(actor)
            and ResponseRole.objects.filter(key=ResponseRole.INCIDENT_MANAGER).exists()
        ):
            # Declaring is taking ownership: no permission to assign roles is needed for it.
            _role_assign(
                incident=incident,
                role=ResponseRole.INCIDENT_MANAGER,
                user=actor,
                actor=actor,
                source=source,
                why="declared the incident",
            )
    return incident


def _reason(field: str, value: str | None) -> str:
    reason = (value or "").strip()
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput({field: f"Reasons are limited to {REASON_MAX_LENGTH} characters."})
    return reason


def _check_role_holders(roles: dict[str, Any]) -> None:
    """Refuse (InvalidInput on ``roles``) users named for a role who cannot hold one."""
    errors = []
    names = dict(ResponseRole.objects.values_list("key", "name"))
    for key, user in roles.items():
        if (
            user is not None
            and not isinstance(user, (int, str))
            and not can_hold_response_role(user)
        ):
            errors.append(response_role_refusal(user, names.get(key, key)))
    if errors:
        raise InvalidInput({"roles": " ".join(errors)})


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
            new_services = _services(value)
            current = set(locked.services.values_list("pk", flat=True))
            if current != {s.pk for s in new_services}:
                changed.append(name)
            continue
        if name in ("impact", "urgency"):
            _check_choice(name, value, Level.values)
        if name == "detection_source":
            _check_choice(name, value, DetectionSource.values)
        if name == "title":
            value = (value or "").strip()[:200]
            if not value:
                raise InvalidInput({"title": "A title is required."})
        if name in TEXT_FIELDS and value is None:
            value = ""
        if name == "detected_at" and value is None:
            raise InvalidInput({"detected_at": "The detection time is required."})
        if name in ("impact_started_at", "detected_at"):
            value = _reported_time(name, value, now)
        if name == "affected_users":
            _check_count(name, value)
        if getattr(locked, name) != value:
            setattr(locked, name, value)
            changed.append(name)
    if not changed:
        return locked
    correction = locked.status in FINAL_STATUSES
    _check_after_resolution(locked, changed, actor=actor, reason=reason)

    _validate_times(locked, now)
    old_priority = locked.priority
    priority_reason = _reason("priority_reason", priority_reason)
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
        actor_id=_id(actor),
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
    level = _severity(severity)
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
    reason = _reason("severity_reason", reason)
    priority_reason = _reason("priority_reason", priority_reason)
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
        actor_id=_id(actor),
        source=source,
    )
    return locked


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


@transaction.atomic
def incident_role_assign(
    *,
    incident: Incident,
    role: ResponseRole | str,
    user: Any,
    actor: Any,
    source: str,
) -> RoleAssignment | None:
    """Assign (or with ``user=None`` unassign) a response role on an incident (§3.1).

    Refused (InvalidInput) once the incident is closed or cancelled: who held which role is
    part of its record; and for a user who cannot hold a role (a read-only Viewer, see
    ``policy.can_hold_response_role``). Writes a timeline entry and a history record and sends
    ``incident_role_assigned`` after commit. Idempotent: assigning the current holder again
    is a no-op, in any status.
    """
    require_perm(actor, "incidents.assign_incident_roles", "assign roles on")
    return _role_assign(incident=incident, role=role, user=user, actor=actor, source=source)


@transaction.atomic
def incident_role_claim(
    *,
    incident: Incident,
    role: ResponseRole | str,
    user: Any,
    source: str,
    why: str,
) -> RoleAssignment | None:
    """``user`` takes ``role`` on ``incident`` if nobody holds it (acknowledging the page
    they were sent for it, say); ``why`` says how, on the timeline entry. Needs no permission
    to assign roles (taking an empty role one was paged for is not assigning others), but
    the user must be able to hold one, and the incident must be active. Returns the new
    assignment, or None when the role was held (by anyone, the user included), the incident
    is not active, or the user cannot hold it. Idempotent."""
    if not isinstance(role, ResponseRole):
        role = ResponseRole.objects.filter(key=role).first()
        if role is None:
            return None
    if not can_hold_response_role(user):
        return None
    status = (
        Incident.objects.select_for_update().values_list("status", flat=True).get(pk=incident.pk)
    )
    if status not in ACTIVE_STATUSES:
        return None
    if RoleAssignment.objects.filter(incident=incident, role=role).exists():
        return None
    return _role_assign(incident=incident, role=role, user=user, actor=user, source=source, why=why)


def _role_assign(
    *,
    incident: Incident,
    role: ResponseRole | str,
    user: Any,
    actor: Any,
    source: str,
    why: str = "",
) -> RoleAssignment | None:
    if not isinstance(role, ResponseRole):
        try:
            role = ResponseRole.objects.get(key=role)
        except ResponseRole.DoesNotExist:
            raise InvalidInput({"role": f"Unknown role {role!r}."}) from None
    if user is not None and not isinstance(user, get_user_model()):
        try:
            user = get_user_model().objects.get(pk=user)
        except (get_user_model().DoesNotExist, ValueError, TypeError):
            raise InvalidInput({"user": f"Unknown user {user!r}."}) from None
    if user is not None and not user.is_active:
        raise InvalidInput({"user": f"{user} is not an active user."})
    if user is not None and not can_hold_response_role(user):
        raise InvalidInput({"user": response_role_refusal(user, role.name)})
    # Lock the incident so two assignments of the same role queue instead of colliding.
    status = (
        Incident.objects.select_for_update().values_list("status", flat=True).get(pk=incident.pk)
    )
    current = RoleAssignment.objects.filter(incident=incident, role=role).first()
    if (current.user_id if current else None) == (user.pk if user else None):
        return current
    if status in FINAL_STATUSES:
        raise InvalidInput(
            {
                "role": f"The incident is {status}; its response roles are part of its record "
                f"and no longer change ({role.name})."
            }
        )

    previous = current.user if current else None
    if user is None:
        current._history_user = actor
        current._change_reason = "unassigned"
        current.delete()
        assignment = None
        message = f"{role.name}: {_name(previous)} unassigned."
    else:
        assignment = current or RoleAssignment(incident=incident, role=role)
        assignment.user = user
        assignment.assigned_at = timezone.now()
        assignment.assigned_by = actor
        audited_save(assignment, actor=actor, reason="assigned")
        message = f"{role.name}: {_name(user)} assigned" + (
            f" (replacing {_name(previous)})." if previous else "."
        )
        if why:
            message = f"{role.name}: {_name(user)} ({why})."
    role_data: dict[str, Any] = {"role": role.key, "user": user.pk if user else None}
    if why:
        role_data["why"] = why
    timeline_record(
        incident=incident,
        kind=Kind.ROLE,
        source=source,
        actor=actor,
        message=message,
        data=role_data,
    )
    announce(
        INCIDENT_ROLE_ASSIGNED,
        incident=incident,
        role_key=role.key,
        user_id=user.pk if user else None,
        actor_id=_id(actor),
        source=source,
    )
    return assignment


def _name(user: Any) -> str:
    if user is None:
        return "nobody"
    return user.get_full_name() or user.get_username()


def _id(actor: Any) -> int | None:
    return actor.pk if actor is not None else None


__all__ = [
    "ACTIVE_STATUSES",
    "CORRECTABLE_FIELDS",
    "CORRECTION_PERMISSION",
    "EDITABLE_FIELDS",
    "FINAL_STATUSES",
    "PAGING_MODES",
    "TIMING_FIELDS",
    "Source",
    "incident_change_severity",
    "incident_create",
    "incident_note_add",
    "incident_role_assign",
    "incident_role_claim",
    "incident_update",
]
