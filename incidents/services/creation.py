"""Logging a new incident: its ID, priority, SLA clocks, first timeline entry and roles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ..bulk import rows_insert
from ..errors import InvalidInput
from ..events import INCIDENT_CREATED, announce
from ..events.recording import announce_many
from ..models import (
    INCIDENT_HISTORY,
    DetectionSource,
    Incident,
    IncidentDaySequence,
    Kind,
    Level,
    ResponseRole,
    Service,
    SeverityLevel,
    Source,
)
from .common import apply_sla, audited_save, require_perm, timeline_record
from .incidents import (
    actor_id,
    check_choice,
    check_count,
    clean_reason,
    reported_time,
    services_resolve,
    validate_times,
)
from .policy import (
    can_hold_response_role,
    incident_policy_get,
    priority_check,
    severity_defaults,
)
from .roles import check_role_holders, incident_role_assign, role_assign
from .severity import severity_resolve

# Who is told when an incident is logged, carried in the ``incident_created`` event for the
# escalation app: "team" pages the response team (§4.2 step 1); "none" pages nobody (an alert
# rule's "monitor and investigate"); "escalate" also fires the escalation matrix's first step
# at once ("escalate immediately"); "security" also notifies the security team contact.
PAGING_MODES = ("team", "none", "escalate", "security")


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


def _save_new(incident: Incident, *, services: list[Service], actor: Any) -> None:
    """Insert the incident, its services and one history record that holds them: four
    statements (the history's services copied from the links inserted), where saving and then
    adding the services (which reads the current ones, and records history again) takes
    eight."""
    incident.skip_history_when_saving = True  # type: ignore[attr-defined]
    try:
        audited_save(incident, actor=actor, reason="created")
    finally:
        del incident.skip_history_when_saving  # type: ignore[attr-defined]
    through = Incident.services.through
    service_ids = dict.fromkeys(service.pk for service in services)  # each once, in order
    links = through.objects.bulk_create(
        [through(incident_id=incident.pk, service_id=pk) for pk in service_ids]
    )
    # The history record copies these links instead of reading them back.
    incident.__dict__["_new_service_links"] = links
    INCIDENT_HISTORY.create_historical_record(incident, "+")


@dataclass
class NewIncident:
    """An incident checked and built by :func:`incident_prepare`, not written yet."""

    incident: Incident
    services: list[Service]
    actor: Any
    source: str
    paging: str
    priority_reason: str
    now: datetime

    def entry(self) -> dict[str, Any]:
        """The incident's first timeline entry ("logged"), as ``timeline_record`` takes it."""
        incident, level = self.incident, self.incident.severity
        message = (
            f"Incident logged: Sev {level.level} ({level.name}), P{incident.priority} (impact "
            f"{incident.impact} × urgency {incident.urgency}), detected via "
            f"{incident.get_detection_source_display().lower()}."
        )
        data: dict[str, Any] = {"severity": level.level, "priority": incident.priority}
        if self.priority_reason:
            message += f" Priority P{incident.priority} confirmed: {self.priority_reason}"
            data["priority_reason"] = self.priority_reason
        return {
            "incident": incident,
            "kind": Kind.CREATED,
            "source": self.source,
            "actor": self.actor,
            "message": message,
            "data": data,
        }


def incident_prepare(
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
    paging: str = "team",
) -> NewIncident:
    """Every check of :func:`incident_create` and the incident it would write, unsaved: reads
    only (a refusal leaves no trace). :func:`incidents_create_many` writes such incidents."""
    require_perm(actor, "incidents.add_incident", "create")
    check_choice("paging", paging, PAGING_MODES)
    title = (title or "").strip()
    if not title:
        raise InvalidInput({"title": "A title is required."})
    level = severity_resolve(severity)
    default_impact, default_urgency = severity_defaults(level)
    impact = impact or default_impact
    urgency = urgency or default_urgency
    check_choice("impact", impact, Level.values)
    check_choice("urgency", urgency, Level.values)
    priority_reason = clean_reason("priority_reason", priority_reason)
    priority = priority_check(
        actor=actor, severity=level, impact=impact, urgency=urgency, reason=priority_reason
    )
    check_choice("detection_source", detection_source, DetectionSource.values)
    service_list = services_resolve(services)
    check_count("affected_users", affected_users)
    now = timezone.now()
    impact_started_at = reported_time("impact_started_at", impact_started_at, now)
    detected_at = reported_time("detected_at", detected_at, now)

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
    validate_times(incident, now)
    apply_sla(incident, level)
    return NewIncident(
        incident=incident,
        services=service_list,
        actor=actor,
        source=source,
        paging=paging,
        priority_reason=priority_reason,
        now=now,
    )


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
    timeline: list[dict[str, Any]] | None = None,
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
    e.g. alert grouping). A caller that writes timeline entries of its own in one INSERT
    (alert processing, ``timeline_record_many``) passes their list as ``timeline``: the
    "logged" entry is appended to it instead of written at once.
    """
    roles = dict(roles or {})
    new = incident_prepare(
        actor=actor,
        source=source,
        title=title,
        severity=severity,
        impact=impact,
        urgency=urgency,
        priority_reason=priority_reason,
        summary=summary,
        detection_source=detection_source,
        services=services,
        customer_facing=customer_facing,
        affected_users=affected_users,
        business_impact=business_impact,
        root_cause=root_cause,
        resolution=resolution,
        impact_started_at=impact_started_at,
        detected_at=detected_at,
        paging=paging,
    )
    check_role_holders(roles)
    incident, now = new.incident, new.now
    # Everything above only reads and checks: a refusal leaves no trace and no broken
    # transaction behind. The writes below expect no error, so inside a caller's transaction
    # (alert processing) they add no savepoint, unless roles are assigned (their permission
    # check may still refuse); on their own they are one transaction.
    with transaction.atomic(savepoint=bool(roles)):
        incident.day = timezone.localdate(now)
        incident.sequence, incident.number = _allocate_number(incident.day)
        _save_new(incident, services=new.services, actor=actor)
        entry = new.entry()
        if timeline is None:
            timeline_record(**entry)
        else:
            timeline.append({**entry, "occurred_at": now})
        announce(
            INCIDENT_CREATED,
            incident=incident,
            actor_id=actor_id(actor),
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
            role_assign(
                incident=incident,
                role=ResponseRole.INCIDENT_MANAGER,
                user=actor,
                actor=actor,
                source=source,
                why="declared the incident",
            )
    return incident


def incidents_create_many(news: list[NewIncident]) -> None:
    """Write incidents prepared by :func:`incident_prepare` (without roles), as
    :func:`incident_create` would one by one, in a few statements for all of them: their
    numbers in one UPDATE per day, the incidents, their service links and their first history
    records (with the links) in one INSERT each, and their ``incident_created`` events in one.
    The caller writes their "logged" timeline entries (``NewIncident.entry``) with its own,
    after this. Runs in the caller's transaction, which holds the day's number counter until
    it ends."""
    if not news:
        return
    by_day: dict[Any, list[Incident]] = {}
    for new in news:
        by_day.setdefault(timezone.localdate(new.now), []).append(new.incident)
    for day, incidents in by_day.items():
        for incident, (sequence, number) in zip(
            incidents, _allocate_numbers(day, len(incidents)), strict=True
        ):
            incident.day, incident.sequence, incident.number = day, sequence, number
    rows_insert([new.incident for new in news])
    through = Incident.services.through
    links: dict[int, list[Any]] = {}
    rows = []
    for new in news:
        for pk in dict.fromkeys(service.pk for service in new.services):
            row = through(incident_id=new.incident.pk, service_id=pk)
            links.setdefault(new.incident.pk, []).append(row)
            rows.append(row)
    rows_insert(rows)
    INCIDENT_HISTORY.create_first_records(
        [(new.incident, links.get(new.incident.pk, []), new.actor) for new in news],
        reason="created",
    )
    announce_many(
        INCIDENT_CREATED,
        [
            (
                new.incident,
                {"actor_id": actor_id(new.actor), "source": new.source, "paging": new.paging},
            )
            for new in news
        ],
    )


def _allocate_numbers(day: Any, count: int) -> list[tuple[int, str]]:
    """The next ``count`` sequence numbers of the day and their IDs, as :func:`_allocate_number`
    gives them one by one: one UPDATE on every day but the first."""
    table = connection.ops.quote_name(IncidentDaySequence._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last = last + %s WHERE day = %s RETURNING last", [count, day]
        )
        row = cursor.fetchone()
    if row is None:
        first = _allocate_number(day)
        return [first, *(_allocate_numbers(day, count - 1) if count > 1 else [])]
    last = row[0]
    return [(n, f"INC-{day:%Y-%m%d}-{n:03d}") for n in range(last - count + 1, last + 1)]


__all__ = [
    "PAGING_MODES",
    "NewIncident",
    "incident_create",
    "incident_prepare",
    "incidents_create_many",
]
