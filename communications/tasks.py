"""Celery tasks of public communication: thin, idempotent, each calling one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="communications.status_site_render", ignore_result=True)
def status_site_render() -> None:
    """Re-render the public status site, warm the cache and write the static export.
    Idempotent: a render only ever replaces the files with the current truth."""
    from .public.site import site_refresh

    site_refresh()


@shared_task(
    name="communications.maintenance_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def maintenance_sweep_task() -> int:
    """Start the maintenance windows whose start has come and complete those whose end has
    come. Safe to run twice at once (each window is claimed with SKIP LOCKED)."""
    from .services.maintenance import maintenance_sweep

    return maintenance_sweep()


@shared_task(
    name="communications.first_update_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def first_update_sweep_task() -> int:
    """Remind the communications lead of first public updates coming due and record the
    misses (beat, every 15 s). Safe to run twice at once: clocks are claimed with SKIP LOCKED
    and each reminder and miss is recorded on the claimed row."""
    from .services.clock_sweep import first_update_sweep

    # Stop taking clocks well before the soft time limit; the rest is for the next run.
    return len(first_update_sweep(time_budget=35))


@shared_task(
    name="communications.direct_contact_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def direct_contact_sweep_task() -> int:
    """Remind the owners of open enterprise direct-contact tasks every
    ``direct_contact_reminder_minutes`` until they are closed (beat). Safe to run twice at
    once: tasks are claimed with SKIP LOCKED and each reminder is numbered on the claimed row."""
    from .services.direct_contact import direct_contact_sweep

    return direct_contact_sweep(time_budget=35)


@shared_task(
    name="communications.stakeholder_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def stakeholder_sweep_task() -> int:
    """Send the stakeholder groups their updates on time and remind the communications lead
    before an update with nothing new (beat, every 30 s). Safe to run twice at once: schedules
    are claimed with SKIP LOCKED and each send is unique per incident, group and due time."""
    from .services.stakeholders import stakeholder_sweep

    return len(stakeholder_sweep(time_budget=35))


@shared_task(
    name="communications.fanout_run",
    acks_late=True,
    soft_time_limit=540,
    time_limit=600,
    ignore_result=True,
)
def fanout_run_task(fanout_id: int) -> str:
    """Expand one published update or maintenance step into its messages. A duplicate or
    stale task finds the fan-out claimed or done and does nothing."""
    from .services.fanout import fanout_run

    return fanout_run(fanout_id=fanout_id).result


@shared_task(
    name="communications.fanout_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def fanout_sweep_task() -> int:
    """Re-publish fan-outs whose task was lost or whose worker died, and mark messages sent or
    failed as the outbox delivered them (beat, every 30 s). Safe to run twice at once."""
    from .services.fanout import fanouts_sweep
    from .services.message_reconcile import messages_reconcile

    published = fanouts_sweep()
    messages_reconcile(time_budget=30)
    return published
