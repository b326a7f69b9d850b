"""The figures of a monthly report, as the JSON-safe ``data`` dict the package docstring
describes: read from the KPI computation, the stored rollups and summaries, and the survey."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncMonth
from django.utils import timezone

from incidents.models import DetectionSource, Incident, SeverityLevel

from ...models import FirstContactRule, KpiDefinition, KpiMonth, KpiPolicy, SurveyInvitation
from ..compute import KpiResult, incidents_in_scope, judge, statistic_label
from ..periods import Period, month_start, months_back, period_month, policy_zone
from ..rollups import kpi_month_recompute, kpi_trend, month_of, month_summary

SCHEMA = 1
TREND_MONTHS = 12
WRONG_AREA_LABELS = {
    "detection": "Detection",
    "communication": "Communication",
    "technical": "Technical response",
    "process": "Process",
}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _month_key(month: date) -> str:
    return f"{month:%Y-%m}"


def rollups_refresh(*, month: date) -> list[date]:
    """Recompute the stored rollups of the report's month and of the trend's months that are
    stale or were never computed; the months recomputed. The nightly task keeps them fresh, so
    this usually does nothing; it matters for a report asked for right after a late change."""
    window = [months_back(month, back) for back in range(TREND_MONTHS)]
    fresh = set(
        KpiMonth.objects.filter(month__in=window, stale=False).values_list("month", flat=True)
    )
    first = Incident.objects.order_by("detected_at").values_list("detected_at", flat=True).first()
    # Months before the first incident have nothing to store (the trend shows them empty).
    earliest = month_of(first) if first is not None else month
    recomputed = [m for m in window if m not in fresh and (m >= earliest or m == month)]
    for stale in recomputed:
        kpi_month_recompute(month=stale)
    return recomputed


def _trend_direction(definition: KpiDefinition, value: float | None, previous: float | None):
    if value is None or previous is None:
        return None
    if abs(value - previous) < 1e-9:
        return "same"
    improved = value > previous if definition.higher_is_better else value < previous
    return "better" if improved else "worse"


def _kpi_row(result: KpiResult, previous: Any, previous_month: date) -> dict[str, Any]:
    definition = result.definition
    previous_value = getattr(previous, definition.statistic) if previous is not None else None
    value = result.value
    return {
        "slug": definition.slug,
        "name": definition.name,
        "measure": definition.measure,
        "unit": definition.unit,
        "higher_is_better": definition.higher_is_better,
        "severities": [int(s) for s in definition.severities or ()],
        "statistic": definition.statistic,
        "statistic_label": statistic_label(definition.statistic),
        "target": _round(result.target),
        "value": _round(value),
        "mean": _round(result.mean),
        "median": _round(result.median),
        "p90": _round(result.p90),
        "met": result.met,
        "sample": result.sample,
        "unmeasurable": result.unmeasurable,
        "previous": {
            "month": _month_key(previous_month),
            "value": _round(previous_value),
            "met": judge(definition, previous_value),
            "sample": previous.sample if previous is not None else 0,
        },
        "change": _round(value - previous_value)
        if value is not None and previous_value is not None
        else None,
        "trend": _trend_direction(definition, value, previous_value),
    }


def _trend(month: date, definitions: list[KpiDefinition]) -> tuple[dict[str, Any], list]:
    rows = kpi_trend(end_month=month, months=TREND_MONTHS)
    months = [_month_key(first) for first, _ in rows]
    kpis = []
    for definition in definitions:
        rollups = [by_slug.get(definition.slug) for _, by_slug in rows]
        kpis.append(
            {
                "slug": definition.slug,
                "name": definition.name,
                "unit": definition.unit,
                "statistic": definition.statistic,
                "target": _round(float(definition.target)),
                "values": [
                    _round(getattr(r, definition.statistic)) if r else None for r in rollups
                ],
                "mean": [_round(r.mean) if r else None for r in rollups],
                "median": [_round(r.median) if r else None for r in rollups],
                "p90": [_round(r.p90) if r else None for r in rollups],
                "sample": [r.sample if r else 0 for r in rollups],
                "unmeasurable": [r.unmeasurable if r else 0 for r in rollups],
            }
        )
    return {"months": months, "kpis": kpis}, rows


def _volume_trend(month: date, severities: list[int]) -> dict[str, Any]:
    """Incidents per month and severity over the trend's months: one grouped query."""
    first = months_back(month, TREND_MONTHS - 1)
    zone = policy_zone()
    window = Period(period_month(first).start, period_month(month).end, "")
    rows = (
        incidents_in_scope(period=window)
        .annotate(detected_month=TruncMonth("detected_at", tzinfo=zone))
        .order_by()
        .values("detected_month", "severity_id")
        .annotate(n=Count("pk"))
    )
    months = [months_back(month, back) for back in reversed(range(TREND_MONTHS))]
    index = {first_day: position for position, first_day in enumerate(months)}
    counts: dict[int, list[int]] = {level: [0] * len(months) for level in severities}
    for row in rows:
        detected = row["detected_month"]
        first_day = (detected.date() if isinstance(detected, datetime) else detected).replace(day=1)
        if first_day in index:
            counts.setdefault(row["severity_id"], [0] * len(months))[index[first_day]] += row["n"]
    return {
        "months": [_month_key(m) for m in months],
        "by_severity": [{"severity": level, "counts": counts[level]} for level in sorted(counts)],
        "totals": [sum(counts[level][i] for level in counts) for i in range(len(months))],
    }


def _survey(period: Period) -> dict[str, Any]:
    incidents = incidents_in_scope(period=period).values("pk")
    totals = SurveyInvitation.objects.filter(incident__in=incidents).aggregate(
        invited=Count("pk"),
        rated=Count("pk", filter=Q(rating__isnull=False)),
        commented=Count("pk", filter=~Q(comment="")),
        **{f"r{score}": Count("pk", filter=Q(rating=score)) for score in range(1, 6)},
    )
    rated = totals["rated"] or 0
    total_score = sum(score * totals[f"r{score}"] for score in range(1, 6))
    return {
        "invited": totals["invited"] or 0,
        "rated": rated,
        "commented": totals["commented"] or 0,
        "response_rate": _round(rated / totals["invited"], 4) if totals["invited"] else None,
        "mean": _round(total_score / rated) if rated else None,
        "distribution": {str(score): totals[f"r{score}"] or 0 for score in range(1, 6)},
    }


def _severity_labels() -> dict[int, str]:
    return {
        level: f"Sev {level} ({name})"
        for level, name in SeverityLevel.objects.values_list("level", "name")
    }


def report_data(*, month: date, version: int, now: datetime | None = None) -> dict[str, Any]:
    """The report of ``month`` (its first day) as the package docstring describes it."""
    from ..compute import kpi_results

    month = month_start(month)
    now = now or timezone.now()
    period = period_month(month)
    previous_month = months_back(month, 1)
    definitions = list(KpiDefinition.objects.filter(is_active=True))
    results = kpi_results(period=period, definitions=definitions)
    trend, rows = _trend(month, definitions)
    previous_rollups = rows[-2][1] if len(rows) >= 2 else {}
    summary = month_summary(period=period)
    policy = KpiPolicy.objects.filter(pk=1).first()
    severity_labels = _severity_labels()
    source_labels = dict(DetectionSource.choices)
    by_severity = {int(level): n for level, n in (summary.get("volume_by_severity") or {}).items()}
    actions = dict(summary.get("actions") or {})
    for rate in ("completion_rate", "on_time_rate"):
        if rate in actions:
            actions[rate] = _round(actions[rate], 4)
    impact = summary.get("customer_impact") or {}
    rule = policy.first_contact_rule if policy else FirstContactRule.NO_ESCALATION
    return {
        "schema": SCHEMA,
        "month": _month_key(month),
        "label": f"{month:%B %Y}",
        "period": {
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "time_zone": str(period.start.tzinfo),
        },
        "generated_at": now.isoformat(),
        "version": version,
        "first_contact_rule": {"value": rule, "label": FirstContactRule(rule).label},
        "kpis": [
            _kpi_row(result, previous_rollups.get(result.definition.slug), previous_month)
            for result in results
        ],
        "trend": trend,
        "volume": {
            "total": summary.get("total", sum(by_severity.values())),
            "by_severity": [
                {
                    "severity": level,
                    "label": severity_labels.get(level, f"Sev {level}"),
                    "count": by_severity[level],
                }
                for level in sorted(by_severity)
            ],
            "by_service": [
                {"slug": slug, "name": name, "count": count}
                for slug, name, count in summary.get("volume_by_service") or []
            ],
            "by_source": [
                {"source": source, "label": source_labels.get(source, source), "count": count}
                for source, count in sorted(
                    (summary.get("volume_by_source") or {}).items(), key=lambda item: -item[1]
                )
            ],
            "trend": _volume_trend(month, sorted(severity_labels)),
        },
        "breaches": {
            "response": (summary.get("breaches") or {}).get("response", 0),
            "resolution": (summary.get("breaches") or {}).get("resolution", 0),
        },
        "causes": [
            {"category": category, "label": label, "count": count}
            for category, label, count in summary.get("causes") or []
        ],
        "wrong_areas": [
            {"area": area, "label": WRONG_AREA_LABELS.get(area, area.title()), "count": count}
            for area, count in (summary.get("wrong_areas") or {}).items()
        ],
        "actions": actions,
        "customer_impact": {
            "customer_facing": impact.get("customer_facing", 0),
            "affected_users": impact.get("affected_users", 0),
            "impact_hours": _round(impact.get("impact_hours") or 0, 1),
        },
        "survey": _survey(period),
    }
