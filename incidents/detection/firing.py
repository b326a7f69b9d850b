"""Firing alerts: counted on their open row or stored new, then joined to the group's active
incident or opening one (severity, action and paging from the alert rules; service and
default severity from the routing rules). During a maintenance window of its integration or
routed service a new alert is recorded only; its first repeat after the window is new then."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db import connection, models

from ..models import (
    ACTIVE_STATUSES,
    Alert,
    AlertGroup,
    AlertStatus,
    Incident,
    MaintenanceWindow,
    Source,
)
from ..services import incident_change_severity
from ..services.creation import NewIncident, incident_prepare, incidents_create_many
from .maintenance import window_describe, window_for
from .parsing import IncomingAlert
from .routing import Route, route_alert, route_describe
from .rules import Classification, alert_classify
from .state import Run

SUMMARY_ALERTS = 10


@dataclass(frozen=True)
class NewAlert:
    """A firing alert that joins or opens an incident now: stored new, or the first repeat
    after the maintenance window it was recorded in (``recorded_in``) had ended."""

    alert_id: int
    alert: IncomingAlert
    cls: Classification
    route: Route
    recorded_in: MaintenanceWindow | None = None


@dataclass(frozen=True)
class Fire:
    """A group's firing alerts of one delivery, by fingerprint, with the route, the class and
    the maintenance window (silenced) each one is stored with."""

    alerts: list[IncomingAlert]
    routes: dict[str, Route]
    classes: dict[str, Classification]
    silenced: dict[str, MaintenanceWindow]


def fire_prepare(run: Run, alerts: list[IncomingAlert]) -> Fire:
    """Route and classify firing alerts, and find those a maintenance window silences."""
    integration = run.integration
    alerts = sorted(alerts, key=lambda a: a.fingerprint)
    routes = {
        a.fingerprint: route_alert(alert=a, integration=integration, rules=run.routing)
        for a in alerts
    }
    silenced = {}
    for fingerprint, route in routes.items():
        window = window_for(run.windows, integration_id=integration.pk, service_id=route.service_id)
        if window is not None:
            silenced[fingerprint] = window
    classes = {
        a.fingerprint: alert_classify(
            alert=a, integration=integration, rules=run.rules, route=routes[a.fingerprint]
        )
        for a in alerts
    }
    return Fire(alerts=alerts, routes=routes, classes=classes, silenced=silenced)


def alerts_upsert_many(
    items: list[tuple[Run, AlertGroup, Fire]],
) -> list[list[tuple]]:
    """The upsert of :func:`alerts_fire` for the firing alerts of many deliveries' groups
    (none with an active incident, and no (integration, fingerprint) twice: a row is written
    once per statement), in one statement. Returns each item's rows, as ``alerts_fire``
    takes them."""
    params: list[Any] = []
    count = 0
    for run, group, fire in items:
        params += _upsert_params(run, group=group, incident=None, fire=fire)
        count += len(fire.alerts)
    params.append(AlertStatus.RESOLVED)
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(count), params)
        found = {(row[5], row[1]): row[:5] for row in cursor.fetchall()}
    return [
        [
            found[(run.integration.pk, a.fingerprint)]
            for a in fire.alerts
            if (run.integration.pk, a.fingerprint) in found
        ]
        for run, _group, fire in items
    ]


def alerts_fire(
    run: Run,
    *,
    group: AlertGroup,
    incident: Incident | None,
    reason: str,
    alerts: list[IncomingAlert],
    upserted: tuple[Fire, list[tuple]] | None = None,
) -> Incident | None:
    """Count or store the group's firing alerts; new ones join ``incident`` (the group's
    active incident) or open one. Returns the group's incident. ``upserted``: the alerts'
    rows written already with those of other deliveries (:func:`alerts_upsert_many`)."""
    if upserted is not None:
        fire, rows = upserted
    else:
        fire = fire_prepare(run, alerts)
        rows = _upsert(run, group=group, incident=incident, fire=fire)
    alerts, routes, classes, silenced = fire.alerts, fire.routes, fire.classes, fire.silenced
    # A firing received before a resolve already applied to the alert is stale: the statement
    # writes nothing for it, and returns no row.
    run.result.stale += len(alerts) - len(rows)
    if not rows:
        return incident
    new: list[tuple[int, str]] = []
    recorded_in: dict[int, int] = {}  # alert id -> the window it was recorded in
    elsewhere: dict[int, tuple[str, int]] = {}  # alert id -> (fingerprint, its incident)
    for alert_id, fingerprint, count, incident_id, maintenance_id in rows:
        if fingerprint in silenced:
            # Recorded only: no incident joined or opened, no severity raised, no page.
            if count == 1:
                run.result.in_maintenance += 1
            else:
                run.result.repeated += 1
        elif count == 1:
            new.append((alert_id, fingerprint))
        elif incident_id is None and maintenance_id is not None:
            # Recorded during a window that has ended, and still firing: new now.
            new.append((alert_id, fingerprint))
            recorded_in[alert_id] = maintenance_id
        elif incident_id is not None and (incident is None or incident_id != incident.pk):
            elsewhere[alert_id] = (fingerprint, incident_id)
        else:
            run.result.repeated += 1
    refired = _refired(elsewhere)
    for alert_id, (fingerprint, _) in elsewhere.items():
        if alert_id in refired:
            new.append((alert_id, fingerprint))
        else:
            run.result.repeated += 1
    run.result.new += len(new)
    if not new:
        return incident
    windows = MaintenanceWindow.objects.in_bulk(set(recorded_in.values())) if recorded_in else {}
    by_fp = {a.fingerprint: a for a in alerts}
    new_alerts = [
        NewAlert(
            alert_id=alert_id,
            alert=by_fp[fp],
            cls=classes[fp],
            route=routes[fp],
            recorded_in=windows.get(recorded_in.get(alert_id)),
        )
        for alert_id, fp in new
    ]
    if incident is None:
        # The refired alerts are among the new ones the incident is opened with.
        incident = _open(run, group=group, reason=reason, new_alerts=new_alerts)
    else:
        if recorded_in:
            Alert.objects.filter(pk__in=list(recorded_in)).update(incident=incident)
        if refired:
            Alert.objects.filter(pk__in=list(refired)).update(incident=incident)
        _join(run, incident=incident, reason=reason, new_alerts=new_alerts)
    if refired:
        for alert_id, number in refired.items():
            run.note(
                incident,
                f"Alert {by_fp[elsewhere[alert_id][0]].title} kept firing after {number} "
                "ended (resolved, closed or cancelled): it counts as new here.",
                {"alert": alert_id, "after_incident": number},
            )
    return incident


def _refired(elsewhere: dict[int, tuple[str, int]]) -> dict[int, str]:
    """Of the repeated alerts whose incident is not the group's active one, those whose
    incident has ended (resolved, closed, cancelled, a duplicate), with its number: a sender
    that never resolves (Splunk, a Datadog monitor without recovery) or an alert still firing
    after people closed its incident fires anew. One query, only when there are such."""
    if not elsewhere:
        return {}
    ended = dict(
        Incident.objects.filter(pk__in={pk for _, pk in elsewhere.values()})
        .exclude(status__in=ACTIVE_STATUSES)
        .values_list("pk", "number")
    )
    return {
        alert_id: ended[incident_id]
        for alert_id, (_, incident_id) in elsewhere.items()
        if incident_id in ended
    }


def _json_param(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _upsert(
    run: Run,
    *,
    group: AlertGroup,
    incident: Incident | None,
    fire: Fire,
) -> list[tuple[int, str, int, int | None, int | None]]:
    """Insert each alert, or count it on the firing row with its fingerprint; one statement.
    A silenced alert is inserted with its maintenance window and no incident; a repeat keeps
    the row's incident and window. An alert whose fingerprint was resolved by a delivery
    received later than this one is stale: it is neither inserted nor counted. Returns (id,
    fingerprint, count, incident id, maintenance window id) per alert written: a count of 1 is
    a new alert."""
    params = _upsert_params(run, group=group, incident=incident, fire=fire)
    params.append(AlertStatus.RESOLVED)
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(len(fire.alerts)), params)
        return [(row[0], row[1], row[2], row[3], row[4]) for row in cursor.fetchall()]


def _upsert_params(
    run: Run, *, group: AlertGroup, incident: Incident | None, fire: Fire
) -> list[Any]:
    ops = connection.ops
    received = ops.adapt_datetimefield_value(run.received)
    params: list[Any] = []
    for alert in fire.alerts:
        cls = fire.classes[alert.fingerprint]
        window = fire.silenced.get(alert.fingerprint)
        params += [
            run.integration.pk,
            group.pk,
            incident.pk if incident is not None and window is None else None,
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
            window.pk if window is not None else None,
        ]
    return params


# The alert's columns as the upsert writes them, in order.
_UPSERT_FIELDS = (
    "integration",
    "group",
    "incident",
    "fingerprint",
    "status",
    "title",
    "labels",
    "annotations",
    "raw",
    "severity",
    "rule",
    "action",
    "value",
    "starts_at",
    "starts_at_estimated",
    "received_at",
    "last_received_at",
    "count",
    "maintenance",
)


@lru_cache(maxsize=16)
def _upsert_sql(count: int) -> str:
    """``INSERT … SELECT`` of ``count`` rows of values, but those a later resolve has made
    stale, ``ON CONFLICT`` with the firing row counting up instead."""
    q = connection.ops.quote_name
    fields = [Alert._meta.get_field(name) for name in _UPSERT_FIELDS]
    if connection.vendor == "postgresql":
        # Values selected (not inserted directly) carry no column type: each says its own.
        # Text as text, not varchar(n): an explicit cast would cut a value that is too long
        # instead of refusing it, as storing it does.
        slots = ", ".join(
            "CAST(%s AS text)"
            if isinstance(field, models.CharField | models.TextField)
            else f"CAST(%s AS {field.db_type(connection)})"
            for field in fields
        )
    else:
        slots = ", ".join("%s" for _ in fields)
    table = q(Alert._meta.db_table)
    column = {field.name: q(field.column) for field in fields}
    # VALUES names its columns column1, column2, … in both databases.
    value = {name: f"v.column{n}" for n, name in enumerate(_UPSERT_FIELDS, start=1)}
    # Each row's own integration and receipt time: one statement may carry the alerts of
    # several deliveries (alerts_upsert_many).
    stale = (
        f"SELECT 1 FROM {table} s WHERE s.{column['integration']} = {value['integration']} "
        f"AND s.{column['fingerprint']} = {value['fingerprint']} "
        f"AND s.{column['status']} = %s "
        f"AND s.{column['last_received_at']} > {value['last_received_at']}"
    )
    newer = f"EXCLUDED.{column['last_received_at']} >= {table}.{column['last_received_at']}"
    refresh = ", ".join(
        f"{column[c]} = CASE WHEN {newer} THEN EXCLUDED.{column[c]} ELSE {table}.{column[c]} END"
        for c in ("title", "labels", "annotations", "raw", "last_received_at")
    )
    return (
        f"INSERT INTO {table} ({', '.join(column.values())}) "
        f"SELECT {', '.join(value.values())} FROM (VALUES "
        + ", ".join(f"({slots})" for _ in range(count))
        + f") AS v WHERE NOT EXISTS ({stale}) "
        f"ON CONFLICT ({column['integration']}, {column['fingerprint']}) "
        f"WHERE {column['status']} = 'firing' "
        f"DO UPDATE SET {column['count']} = {table}.{column['count']} + 1, {refresh} "
        f"RETURNING {q('id')}, {column['fingerprint']}, {column['count']}, "
        f"{column['incident']}, {column['maintenance']}, {column['integration']}"
    )


def _describe(alert: IncomingAlert, cls: Classification) -> str:
    return f"{alert.title} (Sev {cls.severity}; {cls.why})"


def _recorded_note(item: NewAlert) -> str:
    if item.recorded_in is None:
        return ""
    return (
        f" This alert first fired during maintenance window {window_describe(item.recorded_in)},"
        " when it was recorded and paged no one."
    )


def _open(
    run: Run,
    *,
    group: AlertGroup,
    reason: str,
    new_alerts: list[NewAlert],
) -> Incident:
    """Open an incident for the group's new alerts: the most severe one leads (its title,
    severity, action, routed service); impact started at the earliest start time a sender
    reported."""
    lead = min(new_alerts, key=lambda item: item.cls.severity)
    integration = run.integration
    starts = [item.alert.starts_at for item in new_alerts if item.alert.starts_at is not None]
    lines = [f"- {item.alert.title}" for item in new_alerts[:SUMMARY_ALERTS]]
    if len(new_alerts) > SUMMARY_ALERTS:
        lines.append(f"- … and {len(new_alerts) - SUMMARY_ALERTS} more")
    summary = (
        f"Opened from {len(new_alerts)} alert(s) of {integration.name} "
        f"({integration.get_kind_display()}):\n" + "\n".join(lines)
    )
    service = lead.route.service
    alert_ids = [item.alert_id for item in new_alerts]
    details: dict[str, Any] = {
        "actor": None,
        "source": Source.WEBHOOK,
        "title": lead.alert.title,
        "severity": lead.cls.severity,
        "urgency": lead.cls.urgency,
        "summary": summary,
        "detection_source": lead.alert.detection_source,
        "services": [service] if service is not None else [],
        "impact_started_at": min(starts) if starts else None,
        "paging": lead.cls.paging,
    }
    # Checked now, written with the other incidents the caller's batch of deliveries opens
    # (openings_write); the timeline entries below are written after them.
    new = incident_prepare(**details)
    incident = new.incident
    run.entries.append({**new.entry(), "occurred_at": new.now})
    run.openings.append(Opening(new=new, group=group, alert_ids=alert_ids, result=run.result))
    for item in new_alerts:
        if item is lead:
            estimated = (
                " Its start time was missing or unreadable: the time of receipt is used."
                if item.alert.starts_at is None
                else ""
            )
            message = f"Alert opened this incident: {_describe(item.alert, item.cls)}.{estimated}"
        else:
            message = f"Alert joined: {_describe(item.alert, item.cls)}. Grouped by {reason}."
        run.note(incident, message + _recorded_note(item), _alert_data(item, reason))
    if lead.route.rule is not None:
        run.note(
            incident,
            route_describe(lead.route, integration),
            {"alert": lead.alert_id, "routing_rule": lead.route.rule.pk},
        )
    if lead.cls.paging == "none":
        run.note(
            incident,
            f"Nobody paged: {lead.cls.why}.",
            {"alert": lead.alert_id, "paging": "none"},
        )
    return incident


@dataclass
class Opening:
    """An incident the alerts of a group open, prepared and not written yet."""

    new: NewIncident
    group: AlertGroup
    alert_ids: list[int]
    result: Any  # the delivery's DeliveryResult, told the incident's number once written


def openings_write(openings: list[Opening]) -> None:
    """Write the incidents prepared by a batch of deliveries (``Run.openings``) and put each on
    its alerts and group: the incidents' own rows in a few INSERTs for all of them
    (``incidents_create_many``), then one UPDATE of the alerts and one of the groups. Before
    the batch's timeline entries are written, and before a delivery reads a group that was
    opened."""
    if not openings:
        return
    incidents_create_many([opening.new for opening in openings])
    _link_many(openings)
    for opening in openings:
        opening.group.incident = opening.new.incident
        opening.result.opened.append(opening.new.incident.number)
    openings.clear()


def _link_many(openings: list[Opening]) -> None:
    """The new incidents on their alerts and groups: on PostgreSQL one statement (the alerts'
    UPDATE in a common table expression), elsewhere two."""
    q = connection.ops.quote_name
    postgres = connection.vendor == "postgresql"
    slot = "CAST(%s AS bigint)" if postgres else "%s"
    statements, params = [], []
    for model, pairs in (
        (Alert, [(pk, o.new.incident.pk) for o in openings for pk in o.alert_ids]),
        (AlertGroup, [(o.group.pk, o.new.incident.pk) for o in openings]),
    ):
        table = q(model._meta.db_table)
        column = q(model._meta.get_field("incident").column)
        values = ", ".join(f"({slot}, {slot})" for _ in pairs)
        # VALUES names its columns column1, column2, … in both databases.
        statements.append(
            f"UPDATE {table} SET {column} = v.column2 FROM (VALUES {values}) AS v "
            f"WHERE {table}.{q('id')} = v.column1"
        )
        params.append([value for pair in pairs for value in pair])
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute(
                f"WITH linked AS ({statements[0]}) {statements[1]}", params[0] + params[1]
            )
        else:
            for sql, values in zip(statements, params, strict=True):
                cursor.execute(sql, values)


def _join(
    run: Run,
    *,
    incident: Incident,
    reason: str,
    new_alerts: list[NewAlert],
) -> None:
    run.result.joined.append(incident.number)
    for item in new_alerts:
        run.note(
            incident.pk,
            f"Alert joined: {_describe(item.alert, item.cls)}. Grouped by {reason}."
            + _recorded_note(item),
            _alert_data(item, reason),
        )
    worst = min(new_alerts, key=lambda item: item.cls.severity)
    if worst.cls.severity < incident.severity_id:
        # A more serious alert in the group raises the incident (and pages for the new
        # severity, through the escalation app); alerts never lower it.
        incident_change_severity(
            incident=incident,
            actor=None,
            source=Source.WEBHOOK,
            severity=worst.cls.severity,
            reason=f"alert {worst.alert.title} ({worst.cls.why})"[:500],
        )


def _alert_data(item: NewAlert, reason: str) -> dict[str, Any]:
    alert, cls = item.alert, item.cls
    return {
        "alert": item.alert_id,
        "fingerprint": alert.fingerprint,
        "severity": cls.severity,
        "rule": cls.rule.key if cls.rule is not None else None,
        "action": cls.action,
        "value": cls.value,
        "grouped_by": reason,
        "starts_at_estimated": alert.starts_at is None,
        "routing_rule": item.route.rule.pk if item.route.rule is not None else None,
        "maintenance": item.recorded_in.pk if item.recorded_in is not None else None,
    }
