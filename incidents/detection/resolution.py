"""Resolved and acknowledged alerts, and the incidents that move to monitoring when all their
alerts have resolved (integrations with auto-resolve)."""

from __future__ import annotations

from ..models import (
    Alert,
    AlertGroup,
    AlertStatus,
    Incident,
    Kind,
    Source,
    Status,
)
from ..services import (
    incident_acknowledge,
    incident_monitor,
)
from ..services.common import timeline_record
from .parsing import IncomingAlert
from .routing import route_alert
from .rules import alert_classify
from .state import Run

AUTO_MONITOR_FROM = (Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATING)

# --- resolve and acknowledge ------------------------------------------------------------------


def alert_resolve(run: Run, *, group: AlertGroup, alert: IncomingAlert) -> None:
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
    route = route_alert(alert=alert, integration=run.integration, rules=run.routing)
    cls = alert_classify(alert=alert, integration=run.integration, rules=run.rules, route=route)
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


def alert_acknowledge(run: Run, *, alert: IncomingAlert) -> None:
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


def incidents_auto_monitor(run: Run) -> None:
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
        timeline_record(
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
