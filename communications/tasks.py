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
    from .services.clock import first_update_sweep

    # Stop taking clocks well before the soft time limit; the rest is for the next run.
    return len(first_update_sweep(time_budget=35))
