"""Stored monthly rollups: each month's KPI figures (over every severity in a KPI's scope and per
severity, over every service and per service) and its summary (volume, SLA breaches, causes,
action items, customer impact), so the 12-month charts read a few rows instead of rescanning
years of incidents.

A month is recomputed as a whole, in one transaction holding its row's lock: the nightly refresh
recomputes the current and the previous month and every stale one; the rollup sweep (every few
minutes) recomputes the stale ones. A month becomes stale when something that counts in it
changes late: an incident of the month is reopened, resolved, re-timed (a corrected detection
time moves it between months: both are marked), changes severity or services; a survey rating
arrives; a KPI definition or the policy changes (every month).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from incidents.models import Service
from reviews.selectors import action_item_completion, review_cause_counts, review_wrong_area_counts

from ..models import KpiDefinition, KpiMonth, KpiRollup
from .compute import GROUPINGS, first_contact_rule, incidents_in_scope, kpi_figures
from .periods import Period, month_start, months_back, period_month, policy_zone

__all__ = [
    "kpi_month_recompute",
    "kpi_months_mark_stale",
    "kpi_months_refresh",
    "kpi_months_stale_recompute",
    "kpi_trend",
    "month_of",
    "month_summary",
    "months_stored",
]


def month_of(moment: datetime) -> date:
    """The first day of the month holding ``moment`` in the policy's time zone."""
    return month_start(timezone.localtime(moment, policy_zone()).date())


def kpi_months_mark_stale(*, months: Iterable[date] | None = None) -> int:
    """Mark months for recomputation by the rollup sweep (``None``: every stored month). A
    month given that was never stored is added, stale, so the sweep computes it. Idempotent.
    Returns how many months are stale because of this call (or were already)."""
    if months is None:
        return KpiMonth.objects.filter(stale=False).update(stale=True)
    firsts = {month_start(m) for m in months}
    KpiMonth.objects.bulk_create(
        [KpiMonth(month=first, stale=True) for first in sorted(firsts)], ignore_conflicts=True
    )
    KpiMonth.objects.filter(month__in=firsts, stale=False).update(stale=True)
    return len(firsts)


def month_summary(
    *,
    period: Period,
    severity: int | None = None,
    service: Service | None = None,
    source: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The period's incidents beyond the KPIs (§9.2): volume by severity, service and detection
    source, SLA breaches, root-cause categories and "what went wrong" areas of their reviews,
    their action items, and customer impact. JSON-safe; about a dozen queries."""
    now = now or timezone.now()
    incidents = incidents_in_scope(period=period, severity=severity, service=service, source=source)
    by_severity = dict(
        incidents.order_by().values_list("severity_id").annotate(n=Count("pk", distinct=True))
    )
    by_service = [
        (slug, name, n)
        for slug, name, n in incidents.filter(services__isnull=False)
        .order_by()
        .values_list("services__slug", "services__name")
        .annotate(n=Count("pk", distinct=True))
        .order_by("-n", "services__name")
    ]
    by_source = dict(
        incidents.order_by().values_list("detection_source").annotate(n=Count("pk", distinct=True))
    )
    impact_end = Coalesce("resolved_at", "cancelled_at", now)
    impact = incidents.filter(customer_facing=True).aggregate(
        customer_facing=Count("pk", distinct=True),
        affected_users=Sum("affected_users"),
        impact=Sum(
            ExpressionWrapper(
                impact_end - Coalesce("impact_started_at", "detected_at"),
                output_field=DurationField(),
            )
        ),
    )
    impact_hours = impact["impact"]
    if isinstance(impact_hours, timedelta):
        impact_hours = impact_hours.total_seconds() / 3600
    return {
        "period": period.label,
        "total": sum(by_severity.values()),
        "volume_by_severity": {str(level): n for level, n in sorted(by_severity.items())},
        "volume_by_service": [list(row) for row in by_service],
        "volume_by_source": dict(sorted(by_source.items())),
        "breaches": {
            "response": incidents.response_breached(now).count(),
            "resolution": incidents.resolution_breached(now).count(),
        },
        "causes": [list(row) for row in review_cause_counts(incidents=incidents)],
        "wrong_areas": review_wrong_area_counts(incidents=incidents),
        "actions": action_item_completion(incidents=incidents),
        "customer_impact": {
            "customer_facing": impact["customer_facing"] or 0,
            "affected_users": impact["affected_users"] or 0,
            "impact_hours": round(float(impact_hours or 0), 2),
        },
    }


def _rollup_rows(kpi_month: KpiMonth, period: Period) -> list[KpiRollup]:
    rows = []
    rule = first_contact_rule()  # once, not once per KPI and grouping
    for definition in KpiDefinition.objects.filter(is_active=True):
        incidents = incidents_in_scope(period=period, severities=definition.severities or ())
        for grouping in GROUPINGS:
            figures = kpi_figures(
                definition=definition, incidents=incidents, grouping=grouping, rule=rule
            )
            for key, result in figures.items():
                values = dict(zip(GROUPINGS[grouping], key, strict=True))
                rows.append(
                    KpiRollup(
                        month=kpi_month,
                        definition=definition,
                        severity=values.get("severity_id"),
                        service_id=values.get("services"),
                        sample=result.sample,
                        unmeasurable=result.unmeasurable,
                        mean=result.mean,
                        median=result.median,
                        p90=result.p90,
                    )
                )
    return rows


def kpi_month_recompute(*, month: date, skip_locked: bool = False) -> KpiMonth | None:
    """Recompute one month's rollups and summary, replacing what was stored, in one transaction
    that holds the month's row lock: two recomputations of the same month run one after the
    other, and a change marking the month stale meanwhile waits for the lock, so it is never
    lost. With ``skip_locked`` a month being recomputed elsewhere is skipped (returns None)."""
    first = month_start(month)
    KpiMonth.objects.get_or_create(month=first)
    with transaction.atomic():
        locked = KpiMonth.objects.select_for_update(skip_locked=skip_locked).filter(month=first)
        kpi_month = locked.first()
        if kpi_month is None:
            return None
        period = period_month(first)
        rows = _rollup_rows(kpi_month, period)
        KpiRollup.objects.filter(month=kpi_month).delete()
        KpiRollup.objects.bulk_create(rows, batch_size=500)
        kpi_month.summary = month_summary(period=period)
        kpi_month.stale = False
        kpi_month.computed_at = timezone.now()
        kpi_month.save(update_fields=["summary", "stale", "computed_at"])
    return kpi_month


def kpi_months_stale_recompute(*, limit: int = 24) -> int:
    """Recompute the stale months, most recent first (the rollup sweep). Safe to run twice at
    once: a month another run holds is skipped. Returns how many were recomputed."""
    months = list(
        KpiMonth.objects.filter(stale=True)
        .order_by("-month")
        .values_list("month", flat=True)[:limit]
    )
    return sum(
        1 for month in months if kpi_month_recompute(month=month, skip_locked=True) is not None
    )


def kpi_months_refresh(*, now: datetime | None = None, backfill: int = 12) -> int:
    """The nightly refresh: the current and previous month (still moving), every stale month,
    and any of the last ``backfill`` months never computed (a fresh install, an import of
    history; a month without incidents is stored too, so the charts know it had none). Returns
    how many months were recomputed."""
    now = now or timezone.now()
    current = month_of(now)
    wanted = {current, months_back(current, 1)}
    stored = set(KpiMonth.objects.values_list("month", flat=True))
    wanted |= {months_back(current, n) for n in range(backfill)} - stored
    wanted |= set(KpiMonth.objects.filter(stale=True).values_list("month", flat=True))
    return sum(
        1
        for month in sorted(wanted, reverse=True)
        if kpi_month_recompute(month=month, skip_locked=True) is not None
    )


def kpi_trend(
    *,
    end_month: date,
    months: int = 12,
    severity: int | None = None,
    service: Service | None = None,
) -> list[tuple[date, dict[str, KpiRollup | None]]]:
    """The stored rollups of the ``months`` months up to ``end_month``, oldest first: for each
    month, every active KPI's rollup over the severity and service asked for (None where the
    month is not stored or had no incident to count). One query."""
    end = month_start(end_month)
    wanted = [months_back(end, n) for n in range(months - 1, -1, -1)]
    definitions = list(KpiDefinition.objects.filter(is_active=True).values_list("pk", "slug"))
    slugs = dict(definitions)
    rollups: QuerySet[KpiRollup] = KpiRollup.objects.filter(
        month__month__in=wanted,
        definition_id__in=slugs,
        severity=severity,  # None: the rollup over every severity (IS NULL)
        service=service,
    ).select_related("month")
    found = {(r.month.month, r.definition_id): r for r in rollups}
    return [(month, {slug: found.get((month, pk)) for pk, slug in definitions}) for month in wanted]


def months_stored(*, months: Iterable[date]) -> dict[date, KpiMonth]:
    """The stored months among ``months`` (with their summaries), by first day."""
    return {m.month: m for m in KpiMonth.objects.filter(month__in=[month_start(m) for m in months])}
