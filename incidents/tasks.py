"""Celery tasks of the incident core: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from .services import sla_breaches_record


@shared_task(
    name="incidents.sla_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def sla_sweep_task() -> int:
    """Note SLA breaches that came due. Safe to run twice at once (unique breach rows)."""
    return sla_breaches_record()


@shared_task(
    name="incidents.alert_delivery_process",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def alert_delivery_process_task(delivery_id: int) -> str:
    """Turn one stored webhook delivery into alerts and incidents. A duplicate or stale task
    finds the delivery claimed or processed and does nothing; a transient database error
    (deadlock, lost connection) is retried with backoff."""
    from .detection.processing import delivery_process

    return delivery_process(delivery_id=delivery_id).outcome


@shared_task(
    name="incidents.alert_deliveries_drain",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def alert_deliveries_drain_task() -> int:
    """Process fresh webhook deliveries until none is left (queued after deliveries commit).
    Several run side by side; each claims what no other holds."""
    from .detection.processing import deliveries_drain

    return deliveries_drain()


@shared_task(
    name="incidents.alert_delivery_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def alert_delivery_sweep_task() -> int:
    """Queue again webhook deliveries left pending (lost task, failed attempt). Safe to run
    twice at once."""
    from .detection.intake import deliveries_requeue

    return deliveries_requeue()


@shared_task(
    name="incidents.events_follow",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def incident_events_follow_task(incident_id: int) -> int:
    """Run the handlers of one incident's due events, oldest first (queued after the events
    commit, on the urgent queue for Sev 1–2). A duplicate or stale task finds nothing due."""
    from .events import incident_events_follow

    return incident_events_follow(incident_id=incident_id).handled


@shared_task(
    name="incidents.events_follow_many",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def incident_events_follow_many_task(incident_ids: list[int], urgent: bool) -> int:
    """Run the handlers of many incidents' due events, one incident after the other, for a
    short time budget; the rest is queued again (queued after a drain's batch of deliveries
    commits). A duplicate or stale task finds nothing due."""
    from .events.recording import incidents_events_follow_many

    return incidents_events_follow_many(list(incident_ids), urgent=bool(urgent))


@shared_task(
    name="incidents.events_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def events_sweep_task() -> int:
    """Queue again events whose kick was lost or whose dispatcher died. Safe to run twice."""
    from .events import events_requeue

    return events_requeue()


@shared_task(
    name="incidents.heartbeat_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def heartbeat_sweep_task() -> int:
    """Open a "no signal" incident for each integration whose heartbeat is overdue. Safe to
    run twice at once (rows claimed with SKIP LOCKED; one incident each)."""
    from .detection.heartbeat import heartbeats_sweep

    return len(heartbeats_sweep())


@shared_task(
    name="incidents.heartbeat_incident_resolve",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def heartbeat_incident_resolve_task(integration_id: int, incident_id: int) -> bool:
    """The integration's signal returned: resolve its "no signal" incident (queued after the
    signal commits). A duplicate or late task finds the incident forgotten and does nothing."""
    from .detection.heartbeat import heartbeat_incident_resolve

    return (
        heartbeat_incident_resolve(integration_id=integration_id, incident_id=incident_id)
        is not None
    )
