"""What the KPI dashboard shows, built from the KPI selectors: the filters, each KPI against its
target with its trend against the previous period, the 12-month charts from the stored rollups,
and the period's summary tables. No query here walks the incidents one by one; the number of
queries depends on the number of KPIs, not of incidents."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from incidents.models import DetectionSource, Service, SeverityLevel

from ..charts import line_chart, stacked_bar_chart
from ..formatting import format_value
from ..models import TIME_MEASURES, KpiDefinition, Measure, Statistic
from ..selectors import KpiResult, Period, kpi_results, period_month, period_parse
from ..services.periods import month_start, months_back, policy_zone
from ..services.rollups import kpi_trend, month_of, month_summary, months_stored

TREND_MONTHS = 12
SOURCE_LABELS = dict(DetectionSource.choices)
AREA_LABELS = {
    "detection": "Detection",
    "communication": "Communication",
    "technical": "Technical work",
    "process": "Process",
}
ACTION_LABELS = {
    "total": "Action items",
    "done": "Done",
    "wont_do": "Won't do",
    "open": "Open or in progress",
    "overdue": "Overdue",
}


# ----- filters ----------------------------------------------------------------------------------


class DashboardFilterForm(forms.Form):
    """The dashboard's filters (GET). ``cleaned_data`` holds a Period, a severity level, a
    Service and a detection source (None for "all")."""

    period = forms.CharField(
        required=False,
        max_length=40,
        help_text="2026-11 (a month), 2026-Q4, 2026, or 2026-11-03..2026-11-20. Empty: this month.",
    )
    severity = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    service = forms.ChoiceField(required=False)
    source = forms.ChoiceField(
        required=False, choices=[("", "All sources"), *DetectionSource.choices]
    )

    def __init__(self, data: Any, *, levels: list[SeverityLevel], services: list[Service]):
        super().__init__(data)
        self.zone = policy_zone()
        self.levels = {level.level: level for level in levels}
        self.services = {service.slug: service for service in services}
        self.fields["severity"].choices = [("", "All severities")] + [
            (level.level, str(level)) for level in levels
        ]
        self.fields["service"].choices = [("", "All services")] + [
            (service.slug, service.name) for service in services
        ]
        self.fields["period"].widget.attrs.update(
            {"placeholder": f"{timezone.localtime(timezone.now(), self.zone):%Y-%m}"}
        )

    def clean_period(self) -> Period:
        text = (self.cleaned_data.get("period") or "").strip()
        if not text:
            return period_month(month_of(timezone.now()), zone=self.zone)
        try:
            return period_parse(text, zone=self.zone)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_service(self) -> Service | None:
        slug = self.cleaned_data.get("service") or ""
        return self.services.get(slug) if slug else None

    def clean_source(self) -> str | None:
        return self.cleaned_data.get("source") or None


@dataclass(frozen=True)
class Scope:
    """The filters of one dashboard request, validated."""

    period: Period
    severity: int | None = None
    service: Service | None = None
    source: str | None = None

    @classmethod
    def from_form(cls, form: DashboardFilterForm) -> Scope:
        data = form.cleaned_data
        return cls(data["period"], data.get("severity"), data.get("service"), data.get("source"))

    def params(self, **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"period": self.period.label}
        if self.severity is not None:
            params["severity"] = self.severity
        if self.service is not None:
            params["service"] = self.service.slug
        if self.source:
            params["source"] = self.source
        params.update({key: value for key, value in extra.items() if value is not None})
        return params

    def url(self, name: str, **extra: Any) -> str:
        return reverse(f"admin:{name}") + "?" + urlencode(self.params(**extra))

    def drill(self, **extra: Any) -> str:
        return self.url("kpis_dashboard_incidents", **extra)

    def filters(self) -> dict[str, Any]:
        return {"severity": self.severity, "service": self.service, "source": self.source}

    def describe(self) -> str:
        bits = [self.period.label]
        if self.severity is not None:
            bits.append(f"Sev {self.severity}")
        if self.service is not None:
            bits.append(self.service.name)
        if self.source:
            bits.append(SOURCE_LABELS.get(self.source, self.source))
        return " · ".join(bits)


def previous_period(period: Period) -> Period:
    """The period to compare with: the previous month, quarter or year; for a range of days,
    as many days just before it."""
    zone = period.start.tzinfo
    first = period.first_day
    label = period.label
    if period.is_month:
        return period_month(months_back(first, 1), zone=zone)
    if len(label) == 7 and label[5] == "Q":
        quarter = int(label[6])
        year = int(label[:4]) - (quarter == 1)
        return period_parse(f"{year}-Q{(quarter - 2) % 4 + 1}", zone=zone)
    if len(label) == 4:
        return period_parse(f"{int(label) - 1}", zone=zone)
    last = period.end.astimezone(zone).date() - timedelta(days=1)
    days = (last - first).days + 1
    end = first - timedelta(days=1)
    return period_parse(f"{end - timedelta(days=days - 1)}..{end}", zone=zone)


def trend_end_month(period: Period) -> date:
    """The last month of the 12-month charts: the period's last month, but never after this
    month."""
    last_moment = period.end - timedelta(microseconds=1)
    last = month_start(last_moment.astimezone(period.start.tzinfo).date())
    return min(last, month_of(timezone.now()))


# ----- the KPIs ---------------------------------------------------------------------------------


def _value(definition: KpiDefinition, value: float | None) -> str:
    return format_value(value, definition.unit)


def target_text(definition: KpiDefinition) -> str:
    sign = "≥" if definition.higher_is_better else "≤"
    return f"{sign} {format_value(float(definition.target), definition.unit)}"


def _trend(result: KpiResult, previous: KpiResult | None, label: str) -> dict[str, str]:
    before = previous.value if previous is not None else None
    if result.value is None or before is None:
        return {"arrow": "", "text": f"no figure for {label}", "css": "none"}
    diff = result.value - before
    shown = _value(result.definition, before)
    if abs(diff) < 1e-9:
        return {"arrow": "→", "text": f"same as {label} ({shown})", "css": "same"}
    better = (diff > 0) == result.definition.higher_is_better
    return {
        "arrow": "▲" if diff > 0 else "▼",
        "text": f"{'up' if diff > 0 else 'down'} from {shown} in {label}",
        "css": "better" if better else "worse",
        "verdict": "better" if better else "worse",
    }


def kpi_rows(
    scope: Scope, definitions: list[KpiDefinition]
) -> tuple[list[dict[str, Any]], list[KpiResult]]:
    """One row per active KPI: its figures, target, verdict, trend and the links to the
    incidents behind each number. Also returns the results (for the CSV)."""
    current = kpi_results(period=scope.period, definitions=definitions, **scope.filters())
    before_period = previous_period(scope.period)
    before = kpi_results(period=before_period, definitions=definitions, **scope.filters())
    rows = []
    for result, previous in zip(current, before, strict=True):
        definition = result.definition
        rows.append(
            {
                "definition": definition,
                "result": result,
                "statistic": Statistic(definition.statistic).label,
                "value": _value(definition, result.value),
                "mean": _value(definition, result.mean),
                "median": _value(definition, result.median),
                "p90": _value(definition, result.p90),
                "target": target_text(definition),
                "met": result.met,
                "trend": _trend(result, previous, before_period.label),
                "links": {
                    which: scope.drill(kpi=definition.slug, which=which)
                    for which in ("sample", "unmeasurable", "met", "missed")
                },
            }
        )
    return rows, current


# ----- the 12-month charts (stored rollups) -----------------------------------------------------


def _month_label(month: date, index: int) -> str:
    return f"{month:%b %Y}" if index == 0 or month.month == 1 else f"{month:%b}"


@dataclass
class Trend:
    months: list[date]
    labels: list[str]
    kpi_charts: list[dict[str, Any]] = field(default_factory=list)
    volume_chart: str = ""
    breach_chart: str = ""
    missing: list[date] = field(default_factory=list)
    stale: list[date] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # for the CSV


def trend(scope: Scope, definitions: list[KpiDefinition], levels: list[SeverityLevel]) -> Trend:
    """The last 12 months up to the period's end, from the stored rollups and summaries only
    (a month not stored yet is a gap, listed in ``missing``)."""
    end = trend_end_month(scope.period)
    series = kpi_trend(
        end_month=end, months=TREND_MONTHS, severity=scope.severity, service=scope.service
    )
    months = [month for month, _ in series]
    labels = [_month_label(month, index) for index, month in enumerate(months)]
    stored = _computed(months)
    result = Trend(months=months, labels=labels)
    current = month_of(timezone.now())
    result.missing = [month for month in months if month not in stored and month <= current]
    result.stale = [month for month, row in stored.items() if row.stale]
    for definition in definitions:
        figures = [rollups.get(definition.slug) for _, rollups in series]
        judged = [getattr(r, definition.statistic) if r else None for r in figures]
        name = Statistic(definition.statistic).label
        if definition.measure == Measure.FIRST_CONTACT:
            name = "Resolved on first contact"
        lines = [(name, judged)]
        # For a time the tail is what hurts: the slowest tenth, drawn beside the judged figure.
        if definition.measure in TIME_MEASURES and definition.statistic != Statistic.P90:
            lines.append(("90th percentile", [r.p90 if r else None for r in figures]))
        result.kpi_charts.append(
            {
                "definition": definition,
                "svg": mark_safe(  # the chart escapes every text it holds
                    line_chart(
                        labels=labels,
                        series=lines,
                        target=float(definition.target),
                        unit=definition.unit,
                        title=f"{definition.name}, last {TREND_MONTHS} months",
                    )
                ),
            }
        )
        for month, rollup in zip(months, figures, strict=True):
            result.rows.append(
                {
                    "month": f"{month:%Y-%m}",
                    "kpi": definition.slug,
                    "sample": rollup.sample if rollup else "",
                    "unmeasurable": rollup.unmeasurable if rollup else "",
                    "mean": _round(rollup.mean) if rollup else "",
                    "median": _round(rollup.median) if rollup else "",
                    "p90": _round(rollup.p90) if rollup else "",
                }
            )
    shown_levels = [
        level for level in levels if scope.severity is None or level.level == scope.severity
    ]
    summaries = [stored[month].summary if month in stored else {} for month in months]
    volume = [
        (
            f"Sev {level.level}",
            [
                float((s.get("volume_by_severity") or {}).get(str(level.level), 0))
                for s in summaries
            ],
        )
        for level in shown_levels
    ]
    result.volume_chart = mark_safe(  # the chart escapes every text it holds
        stacked_bar_chart(labels=labels, series=volume, title="Incidents per month by severity")
    )
    breaches = [
        (
            f"{kind.capitalize()} target missed",
            [float((s.get("breaches") or {}).get(kind, 0)) if s else None for s in summaries],
        )
        for kind in ("response", "resolution")
    ]
    result.breach_chart = mark_safe(  # the chart escapes every text it holds
        line_chart(labels=labels, series=breaches, title="SLA breaches per month")
    )
    if scope.service is not None or scope.source or scope.severity is not None:
        result.notes.append(
            "The volume and SLA breach charts count every service and detection source"
            + (" (the volume chart shows the severity chosen)" if scope.severity else "")
            + ": the stored monthly summary is kept for whole months only. The tables below "
            "follow every filter."
        )
    if scope.source:
        result.notes.append(
            "The KPI trend charts count every detection source: the stored rollups are kept per "
            "severity and service."
        )
    return result


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 2)


def _computed(months: list[date]) -> dict[date, Any]:
    """The months among ``months`` stored and computed at least once (a row marked stale before
    its first computation holds nothing yet)."""
    return {
        month: row
        for month, row in months_stored(months=months).items()
        if row.computed_at is not None
    }


def compute_candidates(months: list[date]) -> list[date]:
    """Of ``months``, those the "Compute now" button computes: never computed, not in the
    future."""
    current = month_of(timezone.now())
    stored = _computed(months)
    return [m for m in months if m not in stored and m <= current]


def months_of(end: date) -> list[date]:
    return [months_back(end, n) for n in range(TREND_MONTHS - 1, -1, -1)]


# ----- the period's summary (live) --------------------------------------------------------------


def summary_tables(scope: Scope, levels: list[SeverityLevel]) -> dict[str, Any]:
    """The period's volume, breaches, causes, review findings, action items and customer impact
    (``month_summary``), each row with the link to its incidents."""
    summary = month_summary(period=scope.period, **scope.filters())
    names = {str(level.level): level.name for level in levels}
    drill = scope.drill
    by_severity = [
        {
            "key": level,
            "label": f"Sev {level} · {names.get(level, '')}".rstrip(" ·"),
            "count": count,
            "url": drill(table="volume", key=f"severity:{level}"),
        }
        for level, count in summary["volume_by_severity"].items()
    ]
    by_service = [
        {
            "key": slug,
            "label": name,
            "count": count,
            "url": drill(table="volume", key=f"service:{slug}"),
        }
        for slug, name, count in summary["volume_by_service"]
    ]
    by_source = [
        {
            "key": source,
            "label": SOURCE_LABELS.get(source, source),
            "count": count,
            "url": drill(table="volume", key=f"source:{source}"),
        }
        for source, count in summary["volume_by_source"].items()
    ]
    breaches = [
        {
            "key": kind,
            "label": f"{kind.capitalize()} target missed",
            "count": summary["breaches"][kind],
            "url": drill(table="breaches", key=kind),
        }
        for kind in ("response", "resolution")
    ]
    causes = [
        {
            "key": category or "uncategorised",
            "label": label,
            "count": count,
            "url": drill(table="causes", key=category or "uncategorised"),
        }
        for category, label, count in summary["causes"]
    ]
    areas = [
        {
            "key": area,
            "label": AREA_LABELS.get(area, area),
            "count": count,
            "url": drill(table="areas", key=area),
        }
        for area, count in summary["wrong_areas"].items()
    ]
    actions = summary["actions"]
    action_rows = [
        {
            "key": key,
            "label": label,
            "count": actions.get(key, 0),
            "url": drill(table="actions", key=key),
        }
        for key, label in ACTION_LABELS.items()
    ]
    rate = actions.get("completion_rate")
    impact = summary["customer_impact"]
    return {
        "summary": summary,
        "total": {"count": summary["total"], "url": drill(table="volume", key="all")},
        "by_severity": by_severity,
        "by_service": by_service,
        "by_source": by_source,
        "breaches": breaches,
        "causes": causes,
        "areas": areas,
        "actions": action_rows,
        "completion_rate": None if rate is None else f"{rate * 100:.0f} %",
        "impact": {
            "customer_facing": impact["customer_facing"],
            "customer_facing_url": drill(table="impact", key="customer_facing"),
            "affected_users": impact["affected_users"],
            "impact_hours": format_value(impact["impact_hours"] * 60, "minutes"),
        },
    }
