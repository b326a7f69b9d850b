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
