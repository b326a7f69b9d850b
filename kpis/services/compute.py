"""Computing the KPIs (§9.1) of a period from the incidents' timestamps and timeline, in SQL.

Which incidents count (the README's "KPI definitions" says the same):

* an incident belongs to the period holding its ``detected_at`` (in the KPI policy's time zone);
* cancelled incidents and duplicates (``duplicate_of`` set) are never counted;
* a KPI is taken over the severities in its definition's scope (empty: every severity), and
  optionally over one severity, one service and one detection source;
* an incident is *measurable* for a time KPI when both its timestamps are set: no impact-start
  time (detect), not acknowledged yet (respond) or not resolved yet (resolve) is counted as
  "not measurable", never as zero;
* first-contact resolution is the share of the resolved incidents resolved on first contact, by
  the policy's rule; the unresolved ones are "not measurable";
* satisfaction is the mean of the survey ratings of the incidents; invitations not answered are
  "not measurable".

Every figure is aggregated by the database: counts and means with ``COUNT``/``AVG``, medians and
90th percentiles (nearest rank: the smallest value with at least that share of the sample at or
below it) with the ``CUME_DIST`` window function, on PostgreSQL and SQLite alike. No Python
loop walks the incidents; the number of queries depends on the number of KPIs and groups only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    Avg,
    Case,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import Cast, Coalesce, CumeDist

from incidents.models import Incident, Kind, ResponseRole, Service, Status, TimelineEntry

from ..models import (
    TIME_MEASURES,
    FirstContactRule,
    KpiDefinition,
    KpiPolicy,
    Measure,
    Statistic,
    SurveyInvitation,
)
from .periods import Period

__all__ = [
    "GROUPINGS",
    "KpiResult",
    "first_contact_rule",
    "incidents_in_scope",
    "kpi_figures",
    "kpi_incidents",
    "kpi_results",
]

# The timestamps each time measure runs between.
SPANS = {
    Measure.DETECT: ("impact_started_at", "detected_at"),
    Measure.RESPOND: ("detected_at", "acknowledged_at"),
    Measure.RESOLVE: ("detected_at", "resolved_at"),
}
PERCENTILES = {"median": 0.5, "p90": 0.9}
# How figures may be grouped: every severity in scope and every service, by severity, by
# service (an incident of two services counts in both), or by both.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "all": (),
    "severity": ("severity_id",),
    "service": ("services",),
    "service_severity": ("services", "severity_id"),
}


@dataclass(frozen=True)
class KpiResult:
    """One KPI over one scope. Times are in minutes, first-contact resolution in percent,
    satisfaction out of 5. ``met`` is None without a sample."""

    definition: KpiDefinition
    sample: int
    unmeasurable: int
    mean: float | None
    median: float | None
    p90: float | None

    @property
    def value(self) -> float | None:
        return getattr(self, self.definition.statistic)

    @property
    def target(self) -> float:
        return float(self.definition.target)

    @property
    def met(self) -> bool | None:
        return judge(self.definition, self.value)


def judge(definition: KpiDefinition, value: float | None) -> bool | None:
    """At or better than the target: at or under it for a time, at or over it otherwise."""
    if value is None:
        return None
    target = float(definition.target)
    return value >= target if definition.higher_is_better else value <= target


def incidents_in_scope(
    *,
    period: Period,
    severities: Iterable[int] = (),
    severity: int | None = None,
    service: Service | None = None,
    source: str | None = None,
) -> QuerySet[Incident]:
    """The incidents counted: detected in the period, neither cancelled nor a duplicate, of the
    severities given (empty: all), and of the one severity, service and source asked for."""
    qs = Incident.objects.filter(
        detected_at__gte=period.start, detected_at__lt=period.end, duplicate_of__isnull=True
    ).exclude(status=Status.CANCELLED)
    severities = [int(s) for s in severities or ()]
    if severities:
        qs = qs.filter(severity_id__in=severities)
    if severity is not None:
        qs = qs.filter(severity_id=severity)
    if service is not None:
        qs = qs.filter(services=service)
    if source:
        qs = qs.filter(detection_source=source)
    return qs


def _minutes(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds() / 60
    return float(value)


def first_contact_rule() -> str:
    """The KPI policy's first-contact rule (the default rule when the policy row is missing)."""
    rule = KpiPolicy.objects.filter(pk=1).values_list("first_contact_rule", flat=True).first()
    return rule or FirstContactRule.NO_ESCALATION


def _first_contact_q(rule: str) -> tuple[Q, dict[str, Any]]:
    """Resolved on first contact, as the policy's rule says: the condition, and the annotations
    it needs on the incidents."""
    reopened = TimelineEntry.objects.filter(
        incident=OuterRef("pk"), kind=Kind.STATUS, data__action="reopen"
    )
    if rule == FirstContactRule.FIRST_LEAD:
        leads = (
            TimelineEntry.objects.filter(
                incident=OuterRef("pk"), kind=Kind.ROLE, data__role=ResponseRole.TECHNICAL_LEAD
            )
            .order_by()
            .values("incident")
            .annotate(n=Count("pk"))
            .values("n")
        )
        one_lead = Q(lead_count=1)
        return one_lead & ~Exists(reopened), {"lead_count": Coalesce(Subquery(leads), 0)}
    escalated = TimelineEntry.objects.filter(incident=OuterRef("pk"), kind=Kind.ESCALATION)
    return ~Exists(escalated) & ~Exists(reopened), {}


@dataclass(frozen=True)
class _Metric:
    """How one measure is taken: the rows (incidents or survey invitations), the value
    expression, what makes a row measurable, and what makes it meet the target."""

    rows: QuerySet
    value: Any
    measurable: Q
    group_prefix: str  # path from the rows to the incident ("" or "incident__")


def _metric(definition: KpiDefinition, incidents: QuerySet[Incident], rule: str) -> _Metric:
    measure = definition.measure
    if measure in SPANS:
        start, end = SPANS[measure]
        value = ExpressionWrapper(F(end) - F(start), output_field=DurationField())
        measurable = Q(**{f"{start}__isnull": False, f"{end}__isnull": False})
        return _Metric(incidents, value, measurable, "")
    if measure == Measure.FIRST_CONTACT:
        first_contact, extra = _first_contact_q(rule)
        rows = incidents.annotate(**extra) if extra else incidents
        rows = rows.annotate(
            first_contact=Case(
                When(Q(first_contact) & Q(resolved_at__isnull=False), then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            )
        )
        value = Case(
            When(first_contact=1, then=Value(100.0)),
            default=Value(0.0),
            output_field=FloatField(),
        )
        return _Metric(rows, value, Q(resolved_at__isnull=False), "")
    rows = SurveyInvitation.objects.filter(incident__in=incidents.values("pk"))
    value = Cast(F("rating"), FloatField())
    return _Metric(rows, value, Q(rating__isnull=False), "incident__")


def _group_fields(metric: _Metric, grouping: str) -> list[str]:
    return [metric.group_prefix + name for name in GROUPINGS[grouping]]


def _key(row: dict, fields: list[str]) -> tuple:
    return tuple(row[name] for name in fields)


def kpi_figures(
    *,
    definition: KpiDefinition,
    incidents: QuerySet[Incident],
    grouping: str = "all",
    rule: str | None = None,
) -> dict[tuple, KpiResult]:
    """The KPI's figures over ``incidents`` (already in scope), per group of ``grouping``: keys
    are tuples of the group's values (``()`` for "all"; (service id,), (severity,), (service
    id, severity)). Two queries: counts and mean, then the median and the 90th percentile."""
    metric = _metric(definition, incidents, rule or first_contact_rule())
    fields = _group_fields(metric, grouping)
    rows = metric.rows.annotate(kpi_value=metric.value)
    base = rows.filter(**{f"{name}__isnull": False for name in fields}).order_by()
    aggregates = {
        "sample": Count("pk", filter=metric.measurable, distinct=True),
        "unmeasurable": Count("pk", filter=~metric.measurable, distinct=True),
        "mean": Avg("kpi_value", filter=metric.measurable),
    }
    if fields:
        totals = list(base.values(*fields).annotate(**aggregates))
    else:
        # ``values()`` without fields would group by every column: one aggregate instead.
        totals = [base.aggregate(**aggregates)]
        if not totals[0]["sample"] and not totals[0]["unmeasurable"]:
            totals = []
    figures: dict[tuple, dict[str, Any]] = {
        _key(row, fields): {
            "sample": row["sample"],
            "unmeasurable": row["unmeasurable"],
            "mean": _minutes(row["mean"]),
        }
        for row in totals
    }
    if figures and definition.measure != Measure.FIRST_CONTACT:
        aliases = {f"kpi_g{index}": F(name) for index, name in enumerate(fields)}
        ranked = (
            base.filter(metric.measurable)
            .annotate(**aliases)
            .annotate(
                kpi_rank=Window(
                    CumeDist(),
                    partition_by=list(aliases.values()) or None,
                    order_by=F("kpi_value").asc(),
                )
            )
            .values(*aliases, "kpi_value", "kpi_rank")
        )
        for key, values in _percentiles(ranked, list(aliases)):
            for name, value in values.items():
                figures.setdefault(key, {})[name] = _minutes(value)
    return {
        key: KpiResult(
            definition=definition,
            sample=values.get("sample", 0),
            unmeasurable=values.get("unmeasurable", 0),
            mean=values.get("mean") if values.get("sample") else None,
            median=values.get("median"),
            p90=values.get("p90"),
        )
        for key, values in figures.items()
    }


def _percentiles(ranked: QuerySet, aliases: list[str]) -> list[tuple[tuple, dict[str, Any]]]:
    """(group key, {"median": value, "p90": value}) pairs: per group and percentile, the
    smallest value whose cumulative share of the group is at least the percentile's (nearest
    rank). The ranked rows are wrapped in one ``SELECT ... MIN(CASE ...) GROUP BY`` by the
    database; Django's ORM cannot aggregate over a window it filtered, hence the hand-written
    outer query around its own SQL."""
    inner, params = ranked.query.sql_with_params()
    groups = ", ".join(connection.ops.quote_name(alias) for alias in aliases)
    select = f"{groups}, " if groups else ""
    group_by = f" GROUP BY {groups}" if groups else ""
    mins = ", ".join(
        "MIN(CASE WHEN ranked.kpi_rank >= %s THEN ranked.kpi_value END)" for _ in PERCENTILES
    )
    sql = f"SELECT {select}{mins} FROM ({inner}) ranked{group_by}"
    shares = tuple(share - 1e-9 for share in PERCENTILES.values())
    with connection.cursor() as cursor:
        cursor.execute(sql, (*shares, *params))
        rows = cursor.fetchall()
    width = len(PERCENTILES)
    return [
        (
            tuple(row[:-width]),
            {
                name: _duration(value)
                for name, value in zip(PERCENTILES, row[-width:], strict=True)
                if value is not None
            },
        )
        for row in rows
    ]


def _duration(value: Any) -> Any:
    """A duration read back from raw SQL: PostgreSQL gives a timedelta, SQLite microseconds."""
    if isinstance(value, int) and connection.vendor == "sqlite":
        return timedelta(microseconds=value)
    return value


def kpi_results(
    *,
    period: Period,
    severity: int | None = None,
    service: Service | None = None,
    source: str | None = None,
    definitions: Iterable[KpiDefinition] | None = None,
) -> list[KpiResult]:
    """Every active KPI over the period (and severity, service, detection source), in the
    definitions' order. A definition whose scope excludes the severity asked for has no sample."""
    rule = first_contact_rule()
    if definitions is None:
        definitions = KpiDefinition.objects.filter(is_active=True)
    results = []
    for definition in definitions:
        scope = [int(s) for s in definition.severities or ()]
        if severity is not None and scope and int(severity) not in scope:
            results.append(KpiResult(definition, 0, 0, None, None, None))
            continue
        incidents = incidents_in_scope(
            period=period, severities=scope, severity=severity, service=service, source=source
        )
        figures = kpi_figures(definition=definition, incidents=incidents, rule=rule)
        results.append(figures.get(()) or KpiResult(definition, 0, 0, None, None, None))
    return results


WHICH = ("sample", "unmeasurable", "met", "missed")


def kpi_incidents(
    *,
    definition: KpiDefinition,
    period: Period,
    severity: int | None = None,
    service: Service | None = None,
    source: str | None = None,
    which: str = "sample",
) -> QuerySet[Incident]:
    """The incidents behind a KPI's number, annotated ``measured``: minutes for a time, 100 or
    0 for first-contact resolution, the mean rating for satisfaction (None when not
    measurable). ``which``: the sample, the unmeasurable ones, or those that met or missed the
    target one by one."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}.")
    scope = [int(s) for s in definition.severities or ()]
    incidents = incidents_in_scope(
        period=period, severities=scope, severity=severity, service=service, source=source
    )
    if severity is not None and scope and int(severity) not in scope:
        incidents = incidents.none()
    rule = first_contact_rule()
    measure = definition.measure
    target = float(definition.target)
    if measure == Measure.SATISFACTION:
        rated = Q(survey_invitations__rating__isnull=False)
        qs = incidents.annotate(
            measured=Avg(Cast("survey_invitations__rating", FloatField()), filter=rated),
            invited=Count("survey_invitations", distinct=True),
        )
        filters = {
            "sample": Q(measured__isnull=False),
            "unmeasurable": Q(measured__isnull=True, invited__gt=0),
            "met": Q(measured__gte=target),
            "missed": Q(measured__lt=target),
        }
    else:
        metric = _metric(definition, incidents, rule)
        qs = metric.rows.annotate(measured_raw=metric.value)
        if measure in TIME_MEASURES:
            limit = timedelta(minutes=target)
            filters = {
                "sample": metric.measurable,
                "unmeasurable": ~metric.measurable,
                "met": metric.measurable & Q(measured_raw__lte=limit),
                "missed": metric.measurable & Q(measured_raw__gt=limit),
            }
        else:
            filters = {
                "sample": metric.measurable,
                "unmeasurable": ~metric.measurable,
                "met": metric.measurable & Q(first_contact=1),
                "missed": metric.measurable & Q(first_contact=0),
            }
        qs = qs.annotate(measured=F("measured_raw"))
    return qs.filter(filters[which]).select_related("severity").order_by("-detected_at", "-pk")


def statistic_label(statistic: str) -> str:
    return Statistic(statistic).label
