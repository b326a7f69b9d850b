"""Heartbeats: silence is an alert too.

An integration with ``heartbeat_minutes`` expects a signal at least that often, and the sweep
opens an incident when none came. A signal is

* a ping: ``GET``, ``HEAD`` or ``POST /hooks/ping/<key>/`` (:mod:`.views_ping`), for any
  integration with a heartbeat (the heartbeat kind takes nothing else: cron jobs, backups);
* the always-firing heartbeat alert of an Alertmanager or Grafana integration: a *firing*
  alert whose ``alertname`` label is the integration's ``heartbeat_alertname`` (Prometheus'
  ``Watchdog``). It is taken out of its delivery while the delivery is processed
  (:func:`heartbeat_alerts_take`): it is neither stored as an alert nor opens or joins an
  incident, and counts as a signal received when the delivery was (``received_at``), so a
  processing backlog does not move the clock. This holds with or without a heartbeat
  configured: that alert always fires by design. Its resolved notification is no signal (it
  means the alert pipeline stopped); it is dropped the same way.

Recording a signal is one UPDATE of the integration row (``last_signal_at``, and
``heartbeat_due_at`` = the signal + the interval when a heartbeat is configured); a second one
only while a "no signal" incident is open, which is then resolved after commit by a task
(:func:`heartbeat_incident_resolve`). These bookkeeping columns are excluded from the
integration's audit trail, which is why a plain UPDATE is right here.

The sweep (:func:`heartbeats_sweep`, a beat task every minute) claims the enabled integrations
whose ``heartbeat_due_at`` has passed and that have no open "no signal" incident, with ``FOR
UPDATE SKIP LOCKED`` on the partial index ``integration_heartbeat_due``, and in the same
transaction opens one incident for each, records it in ``heartbeat_incident`` and clears
``heartbeat_due_at``. The row lock and the cleared due time make it exactly once: a concurrent
sweep skips the locked rows, and after the commit the rows are no longer due. An Alertmanager
or Grafana integration with a delivery received before its due time and not yet processed is
left for a later sweep: that delivery may hold the heartbeat alert.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import (
    Case,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    IntegerField,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.utils import timezone

from ..errors import InvalidInput
from ..models import (
    ACTIVE_STATUSES,
    DeliveryStatus,
    DetectionSource,
    Incident,
    Integration,
    IntegrationKind,
    Kind,
    Source,
    WebhookDelivery,
)
from ..services import incident_create, incident_resolve
from ..services.common import timeline_record
from .maintenance import window_for, windows_active
from .parsing import IncomingAlert

logger = logging.getLogger(__name__)

# Kinds whose deliveries may carry the always-firing heartbeat alert.
WATCHDOG_KINDS = (IntegrationKind.ALERTMANAGER, IntegrationKind.GRAFANA)
# The model's bounds of heartbeat_minutes (a month).
MAX_MINUTES = 60 * 24 * 31
# Integrations claimed by one sweep; the rest wait a minute for the next.
SWEEP_BATCH = 200

OFF, WAITING, HEALTHY, SILENT = "off", "waiting", "healthy", "silent"


def _when(at: datetime) -> str:
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}"


def _minutes(count: int) -> str:
    return "1 minute" if count == 1 else f"{count} minutes"


# --- signals ---------------------------------------------------------------------------------


def _due_after(at: datetime) -> Case:
    """``at`` + the integration's interval, computed by the database from the row itself (an
    interval changed at the same moment is the one used); NULL without a heartbeat."""
    interval = ExpressionWrapper(
        Cast("heartbeat_minutes", IntegerField()) * Value(timedelta(minutes=1)),
        output_field=DurationField(),
    )
    return Case(
        When(
            heartbeat_minutes__isnull=False,
            then=ExpressionWrapper(Value(at) + interval, output_field=DateTimeField()),
        ),
        default=Value(None, output_field=DateTimeField()),
        output_field=DateTimeField(),
    )


def integration_signal(*, integration_id: int, at: datetime | None = None) -> bool:
    """Record a signal of the integration received at ``at`` (now): ``last_signal_at`` and,
    with a heartbeat, ``heartbeat_due_at`` = ``at`` + the interval. A signal older than the
    last one recorded changes nothing (deliveries may be processed out of order).

    One UPDATE when no "no signal" incident is open. Otherwise a second one, and the incident
    is resolved after commit by ``heartbeat_incident_resolve_task`` (the incident named in
    the task, so a late or duplicate task resolves nothing else). The first UPDATE waits for
    a sweep holding the row and then re-reads it, so a signal racing the sweep either comes
    first (nothing is opened: the row is no longer due) or resolves what the sweep opened.
    Returns whether a signal was recorded. Idempotent for one ``at``."""
    at = at or timezone.now()
    rows = Integration.objects.filter(pk=integration_id).filter(
        Q(last_signal_at__isnull=True) | Q(last_signal_at__lt=at)
    )
    changes = {"last_signal_at": at, "heartbeat_due_at": _due_after(at)}
    if rows.filter(heartbeat_incident__isnull=True).update(**changes):
        return True
    if not rows.filter(heartbeat_incident__isnull=False).update(**changes):
        return False
    incident_id = (
        Integration.objects.filter(pk=integration_id)
        .values_list("heartbeat_incident_id", flat=True)
        .first()
    )
    if incident_id is not None:
        transaction.on_commit(
            lambda: heartbeat_resolve_enqueue(
                integration_id=integration_id, incident_id=incident_id
            )
        )
    return True


def heartbeat_resolve_enqueue(*, integration_id: int, incident_id: int) -> None:
    """Queue the resolution of a "no signal" incident whose signal returned. A broker failure
    is logged: the next signal queues it again (the incident stays recorded on the row)."""
    from ..tasks import heartbeat_incident_resolve_task

    try:
        heartbeat_incident_resolve_task.apply_async(args=[integration_id, incident_id])
    except Exception:
        logger.exception(
            "Could not queue the resolution of heartbeat incident %s; the next signal will",
            incident_id,
        )


def is_heartbeat_alert(integration: Integration, alert: IncomingAlert) -> bool:
    name = integration.heartbeat_alertname
    return (
        bool(name) and integration.kind in WATCHDOG_KINDS and alert.labels.get("alertname") == name
    )


def heartbeat_alerts_take(
    *, integration: Integration, alerts: list[IncomingAlert], received: datetime
) -> list[IncomingAlert]:
    """Take the heartbeat alerts out of a delivery's alerts (they are never stored and open
    no incident); a firing one records a signal received at ``received``. Returns the other
    alerts. Runs in the delivery's processing transaction."""
    heartbeats = [a for a in alerts if is_heartbeat_alert(integration, a)]
    if not heartbeats:
        return alerts
    if any(a.status == "firing" for a in heartbeats):
        integration_signal(integration_id=integration.pk, at=received)
    return [a for a in alerts if not is_heartbeat_alert(integration, a)]


# --- configuration ---------------------------------------------------------------------------


def heartbeat_configure(
    integration: Integration, *, changed: Iterable[str], now: datetime | None = None
) -> None:
    """Set the heartbeat bookkeeping of an integration being created or changed (unsaved, its
    row locked by the caller): counting starts when a heartbeat is configured, its interval
    changed or the integration enabled again (``heartbeat_due_at`` = now + interval); turning
    it off clears the due time and forgets the open "no signal" incident (which stays for
    people to close). The heartbeat kind needs an interval."""
    changed = set(changed)
    minutes = integration.heartbeat_minutes
    if integration.kind == IntegrationKind.HEARTBEAT and minutes is None:
        raise InvalidInput(
            {"heartbeat_minutes": "A heartbeat integration needs the minutes between signals."}
        )
    restarted = "heartbeat_minutes" in changed or ("enabled" in changed and integration.enabled)
    if not restarted:
        return
    if minutes is None:
        integration.heartbeat_due_at = None
        integration.heartbeat_incident = None
    elif isinstance(minutes, int) and 0 < minutes <= MAX_MINUTES:
        # An out-of-range value is refused by the model's validation right after this.
        integration.heartbeat_due_at = (now or timezone.now()) + timedelta(minutes=minutes)


# --- what the staff see ----------------------------------------------------------------------


@dataclass(frozen=True)
class HeartbeatState:
    status: str  # off, waiting (no signal yet), healthy, silent
    since: datetime | None = None  # silent: the last signal, or when counting started
    incident: Incident | None = None


def heartbeat_state(integration: Integration, *, now: datetime | None = None) -> HeartbeatState:
    """The heartbeat of an integration as of ``now``: off (none configured, or disabled),
    silent (overdue, or its "no signal" incident still recorded), waiting for a first signal,
    or healthy. Reads ``heartbeat_incident`` (select it with the integration)."""
    minutes = integration.heartbeat_minutes
    if minutes is None or not integration.enabled:
        return HeartbeatState(OFF)
    last = integration.last_signal_at
    due = integration.heartbeat_due_at
    incident = integration.heartbeat_incident if integration.heartbeat_incident_id else None
    if incident is not None or (due is not None and due <= (now or timezone.now())):
        since = last
        if since is None and due is not None:
            since = due - timedelta(minutes=minutes)
        return HeartbeatState(SILENT, since=since, incident=incident)
    return HeartbeatState(HEALTHY if last is not None else WAITING)


# --- silence becomes an incident ---------------------------------------------------------------


def heartbeats_sweep(*, now: datetime | None = None, batch: int = SWEEP_BATCH) -> list[str]:
    """Open one "no signal" incident per enabled integration whose heartbeat is overdue and
    has none open; returns their numbers. One claim query (``FOR UPDATE SKIP LOCKED`` on the
    partial index of due rows) and a fixed number of queries per silent integration, each in
    a savepoint, so one failing integration does not stop the others (it stays due and is
    tried again by the next sweep). Safe to run twice at once: exactly one incident each. An
    integration in a maintenance window (its own, or its service's) opens nothing: it is due
    again when the window ends."""
    now = now or timezone.now()
    # Not yet processed, received before the due time: it may hold the heartbeat alert.
    unprocessed = WebhookDelivery.objects.filter(
        integration=OuterRef("pk"),
        status=DeliveryStatus.PENDING,
        received_at__lte=OuterRef("heartbeat_due_at"),
    )
    opened: list[str] = []
    with transaction.atomic():
        due = list(
            Integration.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("service")
            .filter(heartbeat_due_at__lte=now, enabled=True, heartbeat_incident__isnull=True)
            .exclude(Q(kind__in=WATCHDOG_KINDS) & Exists(unprocessed))
            .order_by("heartbeat_due_at", "pk")[:batch]
        )
        for integration in due:
            window = window_for(
                windows_active(
                    integration=integration, service_ids=[integration.service_id], at=now
                ),
                integration_id=integration.pk,
                service_id=integration.service_id,
            )
            if window is not None:
                # Planned work: silence is expected until the window ends; counted from there.
                Integration.objects.filter(pk=integration.pk).update(
                    heartbeat_due_at=window.ends_at
                )
                logger.info(
                    "Heartbeat of integration %s is overdue in maintenance window %s; "
                    "due again at its end",
                    integration.pk,
                    window.pk,
                )
                continue
            try:
                with transaction.atomic():
                    opened.append(_open(integration, now=now).number)
            except Exception:
                logger.exception("No-signal incident of integration %s not opened", integration.pk)
    if opened:
        logger.info("Heartbeat sweep opened %s", ", ".join(opened))
    return opened


def _open(integration: Integration, *, now: datetime) -> Incident:
    minutes = integration.heartbeat_minutes or 0
    due = integration.heartbeat_due_at
    last = integration.last_signal_at
    heard = (
        f"The last signal came at {_when(last)}."
        if last is not None
        else "No signal has come since the heartbeat was configured."
    )
    incident = incident_create(
        actor=None,
        source=Source.SYSTEM,
        title=f"No signal from {integration.name} for {_minutes(minutes)}",
        severity=integration.heartbeat_severity_id,
        summary=(
            f"{integration.name} ({integration.get_kind_display()}) is expected to signal "
            f"at least every {_minutes(minutes)}. {heard} The incident resolves itself when "
            "the signal returns."
        ),
        detection_source=DetectionSource.MONITORING,
        services=[integration.service] if integration.service_id else [],
        impact_started_at=due,
    )
    Integration.objects.filter(pk=integration.pk).update(
        heartbeat_incident=incident, heartbeat_due_at=None
    )
    timeline_record(
        incident=incident,
        kind=Kind.ALERT,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"No signal from {integration.name} for {_minutes(minutes)} "
            f"(due by {_when(due)}). {heard}"
        ),
        data={
            "integration": integration.pk,
            "heartbeat": True,
            "heartbeat_minutes": minutes,
            "last_signal_at": last.isoformat() if last else None,
        },
        occurred_at=now,
    )
    return incident


def heartbeat_incident_resolve(*, integration_id: int, incident_id: int) -> Incident | None:
    """The signal of an integration returned: resolve its "no signal" incident ``incident_id``
    (through ``incident_resolve``, with a timeline entry saying when it returned, and the
    resolution written unless people already wrote one) and forget it on the integration.
    Does nothing when the integration no longer records that incident (resolved already, a
    late or duplicate task). An incident people already resolved or cancelled is only
    forgotten. Idempotent."""
    with transaction.atomic():
        integration = (
            Integration.objects.select_for_update(of=("self",))
            .filter(pk=integration_id, heartbeat_incident_id=incident_id)
            .first()
        )
        if integration is None:
            return None
        incident = Incident.objects.get(pk=incident_id)
        Integration.objects.filter(pk=integration_id).update(heartbeat_incident=None)
        if incident.status not in ACTIVE_STATUSES:
            return incident
        back = integration.last_signal_at or timezone.now()
        message = f"Signal from {integration.name} returned at {_when(back)}."
        timeline_record(
            incident=incident,
            kind=Kind.ALERT,
            source=Source.SYSTEM,
            actor=None,
            message=message,
            data={"integration": integration_id, "heartbeat": True, "signal_at": back.isoformat()},
        )
        return incident_resolve(
            incident=incident,
            actor=None,
            source=Source.SYSTEM,
            resolution="" if incident.resolution.strip() else message,
        )
