"""Processing a stored delivery: its alerts deduplicated, grouped and attached to incidents.

One delivery is processed in one transaction, which also marks it processed: it happens
completely, once, or not at all (a failed attempt is recorded and retried by the sweep).

Deduplication. At most one firing alert per (integration, fingerprint), enforced by the
partial unique constraint ``alert_firing_once``; a repeat is a single ``INSERT ... ON
CONFLICT DO UPDATE SET count = count + 1``, so concurrent identical deliveries count up one
row instead of racing to create several.

Grouping. The alerts of one group (the sender's group key, or the integration's grouping
labels) are processed under the row lock of their :class:`AlertGroup`, so concurrent
deliveries of one group open one incident between them. A new alert joins the group's
incident while it is active; otherwise it opens a new one. Groups are locked in key-hash
order, so two deliveries never wait on each other in a cycle.

Order. Deliveries may be processed out of order (parallel workers, a retried task). Each
alert row remembers the receipt time of the latest delivery applied to it, so a firing
received before a resolve that was already applied is ignored (it is stale), and so is a
resolve received before a firing already applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from ..models import (
    ACTIVE_STATUSES,
    Alert,
    AlertGroup,
    AlertStatus,
    DeliveryStatus,
    Incident,
    Integration,
    Kind,
    Source,
    Status,
    TimelineEntry,
    WebhookDelivery,
)
from ..services import (
    incident_acknowledge,
    incident_change_severity,
    incident_create,
    incident_monitor,
)
from .parsing import IncomingAlert, parse_delivery
from .rules import Classification, alert_classify, rules_active

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Under the drain task's 50 s soft time limit.
DRAIN_BUDGET = 40.0
SUMMARY_ALERTS = 10
AUTO_MONITOR_FROM = (Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATING)


@dataclass
class DeliveryResult:
    """What processing one delivery did."""

    outcome: str  # processed, skipped (not pending or held elsewhere), failed
    new: int = 0
    repeated: int = 0
    resolved: int = 0
    acknowledged: int = 0
    stale: int = 0
    opened: list[str] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)
    monitoring: list[str] = field(default_factory=list)


@dataclass
class _Run:
    integration: Integration
    received: datetime
    now: datetime
    rules: list[Any]
    result: DeliveryResult
    entries: list[TimelineEntry] = field(default_factory=list)
    resolved_incidents: set[int] = field(default_factory=set)

    def note(self, incident_id: int, message: str, data: dict[str, Any]) -> None:
        self.entries.append(
            TimelineEntry(
                incident_id=incident_id,
                kind=Kind.ALERT,
                source=Source.WEBHOOK,
                actor=None,
                message=message,
                data={"integration": self.integration.pk, **data},
                occurred_at=self.now,
            )
        )


# --- the entry point -----------------------------------------------------------------------------


def delivery_process(*, delivery_id: int | None = None) -> DeliveryResult:
    """Process one pending delivery (the oldest fresh one when ``delivery_id`` is None), in
    one transaction that also marks it processed.

    Claims the delivery with ``FOR UPDATE SKIP LOCKED``: a delivery another worker holds, or
    one no longer pending, is skipped (a duplicate or stale task does nothing). A transient
    database error (deadlock, lost connection) rolls everything back and is re-raised for the
    task to retry. Any other error rolls the alerts back, records the attempt and its error
    on the delivery and leaves it pending for the sweep, up to ``MAX_ATTEMPTS``; then it is
    marked failed (shown in the admin). Idempotent.
    """
    with transaction.atomic():
        claim = WebhookDelivery.objects.select_for_update(
            skip_locked=True, of=("self",)
        ).select_related("integration")
        if delivery_id is None:
            # Fresh deliveries only: one that failed waits for the sweep's retry.
            claim = claim.filter(status=DeliveryStatus.PENDING, attempts=0).order_by(
                "received_at", "id"
            )
        else:
            claim = claim.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        delivery = claim.first()
        if delivery is None:
            return DeliveryResult(outcome="skipped")
        now = timezone.now()
        try:
            with transaction.atomic():
                result = _process(delivery, now=now)
        except OperationalError:
            raise
        except Exception as exc:
            logger.exception("Webhook delivery %s could not be processed", delivery.pk)
            delivery.attempts += 1
            delivery.error = f"{type(exc).__name__}: {exc}"[:4000]
            fields = ["attempts", "error"]
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.FAILED
                delivery.processed_at = now
                fields += ["status", "processed_at"]
            delivery.save(update_fields=fields)
            return DeliveryResult(outcome="failed")
        delivery.status = DeliveryStatus.PROCESSED
        delivery.processed_at = now
        delivery.attempts += 1
        delivery.error = ""
        delivery.save(update_fields=["status", "processed_at", "attempts", "error"])
        return result


def deliveries_drain(*, budget_seconds: float = DRAIN_BUDGET) -> int:
    """Process fresh pending deliveries, oldest first, one transaction each, until none is
    left to claim or ``budget_seconds`` have passed (then drains are queued again). Several
    drains run side by side, each claiming the next delivery no other holds. Returns how
    many it processed."""
    from .intake import deliveries_kick, kick_flag

    # Before looking: a delivery committed from now on queues drains of its own.
    try:
        kick_flag.clear()
    except Exception:
        logger.exception("The delivery kick key is unavailable")
    deadline = time.monotonic() + budget_seconds
    done = 0
    while True:
        if time.monotonic() > deadline:
            deliveries_kick()
            break
        if delivery_process().outcome == "skipped":
            break
        done += 1
    return done


def _process(delivery: WebhookDelivery, *, now: datetime) -> DeliveryResult:
    integration = delivery.integration
    parsed = parse_delivery(
        integration.kind, json.loads(delivery.body), dedup_key=delivery.dedup_key
    )
    run = _Run(
        integration=integration,
        received=delivery.received_at,
        now=now,
        rules=rules_active(),
        result=DeliveryResult(outcome="processed"),
    )
    groups: dict[str, tuple[str, list[IncomingAlert]]] = {}
    for alert in parsed.alerts:
        key, reason = _group_of(integration, alert)
        groups.setdefault(key, (reason, []))[1].append(alert)
    for key in sorted(groups, key=_key_hash):
        reason, alerts = groups[key]
        _process_group(run, key=key, reason=reason, alerts=alerts)
    if run.entries:
        TimelineEntry.objects.bulk_create(run.entries)
        run.entries = []
    _auto_monitor(run)
    return run.result


def _group_of(integration: Integration, alert: IncomingAlert) -> tuple[str, str]:
    if integration.group_by:
        parts = [f"{name}={alert.labels.get(name, '')}" for name in integration.group_by]
        return "labels:" + ",".join(parts), f"same {', '.join(parts)} (grouping rule)"
    return alert.group_key, alert.group_reason


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _group_lock(integration: Integration, key: str) -> AlertGroup:
    """The group's row, locked until the transaction ends (created on first use)."""
    key_hash = _key_hash(key)
    rows = AlertGroup.objects.select_for_update().filter(integration=integration, key_hash=key_hash)
    group = rows.first()
    if group is None:
        try:
            with transaction.atomic():
                group = AlertGroup.objects.create(
                    integration=integration, key_hash=key_hash, key=key
                )
        except IntegrityError:
            # A concurrent first delivery of this group inserted it; its insert held us
            # until it committed, and now its row can be locked.
            group = rows.get()
    return group


def _active_incident(group: AlertGroup) -> Incident | None:
    if group.incident_id is None:
        return None
    return (
        Incident.objects.filter(pk=group.incident_id, status__in=ACTIVE_STATUSES)
        .only("pk", "number", "status", "severity_id")
        .first()
    )


# --- one group ------------------------------------------------------------------------------------


def _process_group(run: _Run, *, key: str, reason: str, alerts: list[IncomingAlert]) -> None:
    group = _group_lock(run.integration, key)
    incident = _active_incident(group)
    # The last word of the delivery on each alert counts.
    latest: dict[str, IncomingAlert] = {}
    for alert in alerts:
        latest.pop(alert.fingerprint, None)
        latest[alert.fingerprint] = alert
    firing = [a for a in latest.values() if a.action in ("firing", "trigger")]
    resolving = [a for a in latest.values() if a.action in ("resolved", "resolve")]
    acks = [a for a in latest.values() if a.action == "acknowledge"]
    if firing:
        incident = _fire(run, group=group, incident=incident, reason=reason, alerts=firing)
    for alert in resolving:
        _resolve(run, group=group, alert=alert)
    for alert in acks:
        _acknowledge(run, alert=alert)


def _fire(
    run: _Run,
    *,
    group: AlertGroup,
    incident: Incident | None,
    reason: str,
    alerts: list[IncomingAlert],
) -> Incident | None:
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
    run: _Run,
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
    run: _Run,
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
    run: _Run,
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


# --- resolve and acknowledge ------------------------------------------------------------------


def _resolve(run: _Run, *, group: AlertGroup, alert: IncomingAlert) -> None:
    open_alert = (
        Alert.objects.filter(
            integration=run.integration, fingerprint=alert.fingerprint, status=AlertStatus.FIRING
        )
        .only("pk", "incident_id", "title", "last_received_at")
        .first()
    )
    if open_alert is not None:
        if open_alert.last_received_at > run.received:
            run.result.stale += 1  # a later firing was already applied
            return
        Alert.objects.filter(pk=open_alert.pk, status=AlertStatus.FIRING).update(
            status=AlertStatus.RESOLVED,
            ends_at=alert.ends_at or run.now,
            resolved_at=run.now,
            last_received_at=run.received,
            raw=alert.raw,
        )
        run.result.resolved += 1
        if open_alert.incident_id is not None:
            run.note(
                open_alert.incident_id,
                f"Alert resolved: {open_alert.title}.",
                {"alert": open_alert.pk, "fingerprint": alert.fingerprint, "status": "resolved"},
            )
            run.resolved_incidents.add(open_alert.incident_id)
        return
    latest = (
        Alert.objects.filter(integration=run.integration, fingerprint=alert.fingerprint)
        .order_by("-last_received_at", "-id")
        .only("status", "starts_at", "starts_at_estimated", "last_received_at")
        .first()
    )
    if latest is not None and (
        latest.last_received_at >= run.received
        or alert.starts_at is None
        or (not latest.starts_at_estimated and latest.starts_at == alert.starts_at)
    ):
        run.result.stale += 1  # this resolution is already recorded
        return
    # Resolved before Vigil saw it fire (or its firing was lost): recorded, no incident.
    cls = alert_classify(alert=alert, integration=run.integration, rules=run.rules)
    Alert.objects.create(
        integration=run.integration,
        group=group,
        fingerprint=alert.fingerprint,
        status=AlertStatus.RESOLVED,
        title=alert.title,
        labels=alert.labels,
        annotations=alert.annotations,
        raw=alert.raw,
        severity_id=cls.severity,
        rule=cls.rule,
        action=cls.action,
        value=cls.value,
        starts_at=alert.starts_at or run.received,
        starts_at_estimated=alert.starts_at is None,
        ends_at=alert.ends_at or run.now,
        received_at=run.received,
        last_received_at=run.received,
        resolved_at=run.now,
    )
    run.result.resolved += 1


def _acknowledge(run: _Run, *, alert: IncomingAlert) -> None:
    """PagerDuty's acknowledge: the alert is marked, and its incident acknowledged if open."""
    open_alert = (
        Alert.objects.filter(
            integration=run.integration, fingerprint=alert.fingerprint, status=AlertStatus.FIRING
        )
        .select_related("incident")
        .first()
    )
    if open_alert is None:
        run.result.stale += 1
        return
    first = open_alert.acknowledged_at is None
    Alert.objects.filter(pk=open_alert.pk).update(
        acknowledged_at=open_alert.acknowledged_at or run.now,
        last_received_at=max(open_alert.last_received_at, run.received),
    )
    run.result.acknowledged += 1
    incident = open_alert.incident
    if incident is None:
        return
    if first:
        run.note(
            incident.pk,
            f"Alert acknowledged by the sender ({run.integration.name}): {open_alert.title}.",
            {"alert": open_alert.pk, "fingerprint": alert.fingerprint, "status": "acknowledged"},
        )
    if incident.status == Status.OPEN:
        incident_acknowledge(incident=incident, actor=None, source=Source.WEBHOOK)


# --- auto-resolve -------------------------------------------------------------------------------


def _auto_monitor(run: _Run) -> None:
    """With the integration's auto-resolve on, an incident whose alerts have all resolved
    moves to monitoring: the symptom is gone, a person confirms the fix and resolves."""
    if not (run.integration.auto_resolve and run.resolved_incidents):
        return
    candidates = Incident.objects.filter(
        pk__in=run.resolved_incidents, status__in=AUTO_MONITOR_FROM
    ).order_by("pk")
    still_firing = set(
        Alert.objects.filter(
            incident__in=run.resolved_incidents, status=AlertStatus.FIRING
        ).values_list("incident_id", flat=True)
    )
    for incident in candidates:
        if incident.pk in still_firing:
            continue
        total = Alert.objects.filter(incident=incident).count()
        incident = incident_monitor(incident=incident, actor=None, source=Source.WEBHOOK)
        TimelineEntry.objects.create(
            incident=incident,
            kind=Kind.ALERT,
            source=Source.WEBHOOK,
            actor=None,
            message=(
                f"All {total} alert(s) of this incident have resolved: moved to monitoring "
                f"({run.integration.name} auto-resolves). Resolve the incident once the fix "
                "is confirmed."
            ),
            data={"integration": run.integration.pk, "auto_resolve": True},
            occurred_at=run.now,
        )
        run.result.monitoring.append(incident.number)
