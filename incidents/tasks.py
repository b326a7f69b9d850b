"""Celery tasks of the incident core: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task

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
