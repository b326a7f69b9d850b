"""Firing alerts: counted on their open row or stored new, then joined to the group's active
incident or opening one (severity, action and paging from the alert rules)."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection

from ..models import (
    Alert,
    AlertGroup,
    AlertStatus,
    Incident,
    Source,
)
from ..services import (
    incident_change_severity,
    incident_create,
)
from .parsing import IncomingAlert
from .rules import Classification, alert_classify
from .state import Run

SUMMARY_ALERTS = 10


def alerts_fire(
    run: Run,
    *,
    group: AlertGroup,
    incident: Incident | None,
    reason: str,
    alerts: list[IncomingAlert],
) -> Incident | None:
    """Count or store the group's firing alerts; new ones join ``incident`` (the group's
    active incident) or open one. Returns the group's incident."""
    # A firing received before a resolve already applied to the alert is stale.
    stale = set(
        Alert.objects.filter(
            integration=run.integration,
            fingerprint__in=[a.fingerprint for a in alerts],
            status=AlertStatus.RESOLVED,
            last_received_at__gt=run.received,
        ).values_list("fingerprint", flat=True)
    )
    run.result.stale += len(stale)
    fresh = sorted((a for a in alerts if a.fingerprint not in stale), key=lambda a: a.fingerprint)
    if not fresh:
        return incident
    classes = {
        a.fingerprint: alert_classify(alert=a, integration=run.integration, rules=run.rules)
        for a in fresh
    }
    rows = _upsert(run, group=group, incident=incident, alerts=fresh, classes=classes)
    new = [(alert_id, fp) for alert_id, fp, count in rows if count == 1]
    run.result.repeated += len(rows) - len(new)
    run.result.new += len(new)
    if not new:
        return incident
    by_fp = {a.fingerprint: a for a in fresh}
    new_alerts = [(alert_id, by_fp[fp], classes[fp]) for alert_id, fp in new]
    if incident is None:
        incident = _open(run, group=group, reason=reason, new_alerts=new_alerts)
    else:
        _join(run, incident=incident, reason=reason, new_alerts=new_alerts)
    return incident


def _json_param(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _upsert(
    run: Run,
    *,
    group: AlertGroup,
    incident: Incident | None,
    alerts: list[IncomingAlert],
    classes: dict[str, Classification],
) -> list[tuple[int, str, int]]:
    """Insert each alert, or count it on the firing row with its fingerprint; one statement.
    Returns (id, fingerprint, count) per alert: a count of 1 is a new alert."""
    ops = connection.ops
    table = Alert._meta.db_table
    json_slot = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    columns = [
        "integration_id",
        "group_id",
        "incident_id",
        "fingerprint",
        "status",
        "title",
        "labels",
        "annotations",
        "raw",
        "severity_id",
        "rule_id",
        "action",
        "value",
        "starts_at",
        "starts_at_estimated",
        "received_at",
        "last_received_at",
        "count",
    ]
    slots = ", ".join(json_slot if c in ("labels", "annotations", "raw") else "%s" for c in columns)
    received = ops.adapt_datetimefield_value(run.received)
    params: list[Any] = []
    for alert in alerts:
        cls = classes[alert.fingerprint]
        params += [
            run.integration.pk,
            group.pk,
            incident.pk if incident is not None else None,
            alert.fingerprint,
            AlertStatus.FIRING,
            alert.title,
            _json_param(alert.labels),
            _json_param(alert.annotations),
            _json_param(alert.raw),
            cls.severity,
            cls.rule.pk if cls.rule is not None else None,
            cls.action,
            cls.value,
            ops.adapt_datetimefield_value(alert.starts_at or run.received),
            alert.starts_at is None,
            received,
            received,
            1,
        ]
    newer = f"EXCLUDED.last_received_at >= {table}.last_received_at"
    refresh = ", ".join(
        f"{c} = CASE WHEN {newer} THEN EXCLUDED.{c} ELSE {table}.{c} END"
        for c in ("title", "labels", "annotations", "raw", "last_received_at")
    )
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        + ", ".join(f"({slots})" for _ in alerts)
        + f" ON CONFLICT (integration_id, fingerprint) WHERE status = 'firing' "
        f"DO UPDATE SET count = {table}.count + 1, {refresh} "
        "RETURNING id, fingerprint, count"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(row[0], row[1], row[2]) for row in cursor.fetchall()]


def _describe(alert: IncomingAlert, cls: Classification) -> str:
    return f"{alert.title} (Sev {cls.severity}; {cls.why})"


def _open(
    run: Run,
    *,
    group: AlertGroup,
    reason: str,
    new_alerts: list[tuple[int, IncomingAlert, Classification]],
) -> Incident:
    """Open an incident for the group's new alerts: the most severe one leads (its title,
    severity, action); impact started at the earliest start time a sender reported."""
    lead_id, lead, lead_cls = min(new_alerts, key=lambda item: item[2].severity)
    integration = run.integration
    starts = [a.starts_at for _, a, _ in new_alerts if a.starts_at is not None]
    lines = [f"- {a.title}" for _, a, _ in new_alerts[:SUMMARY_ALERTS]]
    if len(new_alerts) > SUMMARY_ALERTS:
        lines.append(f"- … and {len(new_alerts) - SUMMARY_ALERTS} more")
    summary = (
        f"Opened from {len(new_alerts)} alert(s) of {integration.name} "
        f"({integration.get_kind_display()}):\n" + "\n".join(lines)
    )
    incident = incident_create(
        actor=None,
        source=Source.WEBHOOK,
        title=lead.title,
        severity=lead_cls.severity,
        urgency=lead_cls.urgency,
        summary=summary,
        detection_source=lead.detection_source,
        services=[integration.service] if integration.service_id else [],
        impact_started_at=min(starts) if starts else None,
        paging=lead_cls.paging,
    )
    Alert.objects.filter(pk__in=[alert_id for alert_id, _, _ in new_alerts]).update(
        incident=incident
    )
    group.incident = incident
    group.save(update_fields=["incident"])
    run.result.opened.append(incident.number)
    for alert_id, alert, cls in new_alerts:
        if alert_id == lead_id:
            estimated = (
                " Its start time was missing or unreadable: the time of receipt is used."
                if alert.starts_at is None
                else ""
            )
            message = f"Alert opened this incident: {_describe(alert, cls)}.{estimated}"
        else:
            message = f"Alert joined: {_describe(alert, cls)}. Grouped by {reason}."
        run.note(incident.pk, message, _alert_data(alert_id, alert, cls, group, reason))
    if lead_cls.paging == "none":
        run.note(
            incident.pk,
            f"Nobody paged: {lead_cls.why}.",
            {"alert": lead_id, "paging": "none"},
        )
    return incident


def _join(
    run: Run,
    *,
    incident: Incident,
    reason: str,
    new_alerts: list[tuple[int, IncomingAlert, Classification]],
) -> None:
    run.result.joined.append(incident.number)
    for alert_id, alert, cls in new_alerts:
        run.note(
            incident.pk,
            f"Alert joined: {_describe(alert, cls)}. Grouped by {reason}.",
            _alert_data(alert_id, alert, cls, None, reason),
        )
    _, worst, worst_cls = min(new_alerts, key=lambda item: item[2].severity)
    if worst_cls.severity < incident.severity_id:
        # A more serious alert in the group raises the incident (and pages for the new
        # severity, through the escalation app); alerts never lower it.
        incident_change_severity(
            incident=incident,
            actor=None,
            source=Source.WEBHOOK,
            severity=worst_cls.severity,
            reason=f"alert {worst.title} ({worst_cls.why})"[:500],
        )


def _alert_data(
    alert_id: int,
    alert: IncomingAlert,
    cls: Classification,
    group: AlertGroup | None,
    reason: str,
) -> dict[str, Any]:
    return {
        "alert": alert_id,
        "fingerprint": alert.fingerprint,
        "severity": cls.severity,
        "rule": cls.rule.key if cls.rule is not None else None,
        "action": cls.action,
        "value": cls.value,
        "grouped_by": reason,
        "starts_at_estimated": alert.starts_at is None,
    }
