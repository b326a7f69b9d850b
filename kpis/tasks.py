"""Celery tasks of the KPIs app: thin wrappers that call one service each."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="kpis.rollup_sweep",
    acks_late=True,
    soft_time_limit=240,
    time_limit=270,
    ignore_result=True,
)
def rollup_sweep_task() -> int:
    """Recompute the months marked stale by a late change (beat, every few minutes). Safe to
    run twice at once: a month being recomputed elsewhere is skipped (SKIP LOCKED)."""
    from .services.rollups import kpi_months_stale_recompute

    return kpi_months_stale_recompute()


@shared_task(
    name="kpis.rollup_refresh",
    acks_late=True,
    soft_time_limit=1500,
    time_limit=1800,
    ignore_result=True,
)
def rollup_refresh_task() -> int:
    """The nightly refresh of the stored rollups: the current and previous month, the stale
    ones and any of the last 12 never computed (beat)."""
    from .services.rollups import kpi_months_refresh

    return kpi_months_refresh()


@shared_task(
    name="kpis.monthly_report",
    acks_late=True,
    soft_time_limit=300,
    time_limit=330,
    ignore_result=True,
)
def monthly_report_task() -> str:
    """Generate the report of the last month that has ended (in the KPI policy's time zone)
    and e-mail it to the policy's recipients (beat, on the 1st and the 2nd). Idempotent: once
    the report has been e-mailed a run does nothing; concurrent runs take turns on the report's
    row lock and each address is keyed once per month in the outbox."""
    from .services.reports import monthly_report_run

    run = monthly_report_run()
    month = f"{run.report.month:%Y-%m}"
    if not run.generated:
        return f"{month}: already e-mailed"
    if run.email is None or run.email.no_recipients:
        return f"{month}: generated (version {run.report.version}), not e-mailed: no recipients"
    return f"{month}: generated (version {run.report.version}), e-mailed to {len(run.email.sent)}"
