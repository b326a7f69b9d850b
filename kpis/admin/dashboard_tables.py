"""The incidents behind each number of the KPI dashboard (the drill-down) and the CSV export of
the rows behind every table."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import timedelta, tzinfo
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

from incidents.models import Incident, Status
from reviews.models import ActionItem, ActionStatus
from reviews.selectors import COUNTED_REVIEW_STATUSES, UNCATEGORISED, WRONG_AREAS
from reviews.services.actions import ACTIVE, overdue_q

from ..formatting import format_value
from ..models import KpiDefinition, Measure
from ..selectors import KpiResult, kpi_incidents
from ..services.compute import incidents_in_scope
from .dashboard_data import ACTION_LABELS, AREA_LABELS, SOURCE_LABELS, Scope

DRILL_TABLES = ("volume", "breaches", "causes", "areas", "actions", "impact")
CSV_TABLES = (
    "kpis",
    "volume_severity",
    "volume_service",
    "volume_source",
    "breaches",
    "causes",
    "wrong_areas",
    "actions",
    "impact",
    "trend",
    "incidents",
)
WHICH_LABELS = {
    "sample": "measured",
    "unmeasurable": "not measurable",
    "met": "that met the target",
    "missed": "that missed the target",
}


class DrillError(ValueError):
    """A drill-down asked for something that does not exist (a 400)."""


# ----- the drill-down ---------------------------------------------------------------------------


def _table_filter(table: str, key: str, scope: Scope) -> tuple[Q, str]:
    """The condition on the scope's incidents for one count of a summary table, and how to say
    it."""
    if table == "volume":
        if key == "all":
            return Q(), "All incidents"
        kind, _, value = key.partition(":")
        if kind == "severity" and value.isdigit():
            return Q(severity_id=int(value)), f"Sev {value}"
        if kind == "service" and value:
            return Q(services__slug=value), f"Service {value}"
        if kind == "source" and value in SOURCE_LABELS:
            return Q(detection_source=value), f"Detected by {SOURCE_LABELS[value]}"
    elif table == "breaches" and key in ("response", "resolution"):
        now = timezone.now()
        breached = getattr(Incident.objects, f"{key}_breached")(now)
        return Q(pk__in=breached.values("pk")), f"{key.capitalize()} target missed"
    elif table == "causes":
        category = UNCATEGORISED if key == "uncategorised" else key
        counted = Q(review__status__in=COUNTED_REVIEW_STATUSES)
        if key == "uncategorised" or key in _cause_labels():
            label = _cause_labels().get(category, "Not categorised")
            return counted & Q(review__cause_category=category), f"Root cause: {label}"
    elif table == "areas" and key in WRONG_AREAS:
        written = ~Q(**{f"review__{WRONG_AREAS[key]}": ""})
        counted = Q(review__status__in=COUNTED_REVIEW_STATUSES) & written
        return counted, f"Reviews found something wrong in {AREA_LABELS[key].lower()}"
    elif table == "actions" and key in ACTION_LABELS:
        items = ActionItem.objects.filter(incident=OuterRef("pk"))
        if key == "done":
            items = items.filter(status=ActionStatus.DONE)
        elif key == "wont_do":
            items = items.filter(status=ActionStatus.WONT_DO)
        elif key == "open":
            items = items.filter(status__in=ACTIVE)
        elif key == "overdue":
            items = items.filter(overdue_q())
        return Q(Exists(items)), f"With action items: {ACTION_LABELS[key].lower()}"
    elif table == "impact" and key == "customer_facing":
        return Q(customer_facing=True), "Customer-facing"
    raise DrillError(f"Unknown table {table!r} or key {key!r}.")


def _cause_labels() -> dict[str, str]:
    from reviews.models import CauseCategory

    return dict(CauseCategory.choices)


def drill_incidents(
    *,
    scope: Scope,
    kpi: str | None,
    which: str | None,
    table: str | None,
    key: str | None,
    definitions: dict[str, KpiDefinition],
) -> tuple[QuerySet[Incident], str, KpiDefinition | None]:
    """The incidents behind one number, a description of them, and the KPI when it is one.
    Raises DrillError for a KPI, ``which``, table or key that does not exist."""
    if kpi:
        definition = definitions.get(kpi)
        if definition is None:
            raise DrillError(f"No active KPI {kpi!r}.")
        which = which or "sample"
        if which not in WHICH_LABELS:
            raise DrillError(f"which must be one of {', '.join(WHICH_LABELS)}.")
        qs = kpi_incidents(
            definition=definition, period=scope.period, which=which, **scope.filters()
        )
        return qs, f"{definition.name}: incidents {WHICH_LABELS[which]}", definition
    if not table or table not in DRILL_TABLES:
        raise DrillError(f"Give kpi= or table= (one of {', '.join(DRILL_TABLES)}).")
    condition, label = _table_filter(table, key or "", scope)
    qs = (
        incidents_in_scope(period=scope.period, **scope.filters())
        .filter(condition)
        .distinct()
        .select_related("severity")
        .order_by("-detected_at", "-pk")
    )
    return qs, label, None


def measured_text(definition: KpiDefinition, measured: Any) -> str:
    if measured is None:
        return "not measurable"
    if isinstance(measured, timedelta):
        return format_value(measured.total_seconds() / 60, definition.unit)
    if definition.measure == Measure.FIRST_CONTACT:
        return "first contact" if float(measured) >= 100 else "not on first contact"
    return format_value(float(measured), definition.unit)


def measured_met(definition: KpiDefinition, measured: Any) -> bool | None:
    if measured is None:
        return None
    value = measured.total_seconds() / 60 if isinstance(measured, timedelta) else float(measured)
    target = float(definition.target)
    return value >= target if definition.higher_is_better else value <= target


def drill_rows(
    incidents: Iterable[Incident], definition: KpiDefinition | None, zone: tzinfo
) -> Iterator[dict[str, Any]]:
    """The drill-down's rows; times in ``zone`` (the KPI policy's, where months are cut)."""
    for incident in incidents:
        row: dict[str, Any] = {
            "incident": incident,
            "number": incident.number,
            "title": incident.title,
            "severity": incident.severity_id,
            "status": Status(incident.status).label,
            "detected": timezone.localtime(incident.detected_at, zone),
        }
        if definition is not None:
            measured = getattr(incident, "measured", None)
            row["measured"] = measured_text(definition, measured)
            row["met"] = measured_met(definition, measured)
        yield row


# ----- CSV --------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell safe to open in a spreadsheet: text starting like a formula gets a leading quote
    (numbers are left alone)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_response(
    *, filename: str, header: list[str], rows: Iterable[Iterable[Any]]
) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([csv_cell(cell) for cell in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def bad_request(message: str) -> HttpResponse:
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


def _iso(moment: Any) -> str:
    return timezone.localtime(moment).isoformat() if moment else ""


def _count_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[row["key"], row["label"], row["count"]] for row in rows]


def dashboard_csv_rows(
    table: str,
    *,
    scope: Scope,
    results: list[KpiResult] | None = None,
    tables: dict[str, Any] | None = None,
    trend_rows: list[dict[str, Any]] | None = None,
) -> tuple[list[str], Iterable[Iterable[Any]]]:
    """The header and rows of one of the dashboard's tables (``CSV_TABLES``)."""
    if table == "kpis":
        header = [
            "kpi", "name", "measure", "unit", "statistic", "value", "mean", "median", "p90",
            "target", "met", "sample", "not_measurable",
        ]  # fmt: skip
        return header, [
            [
                r.definition.slug,
                r.definition.name,
                r.definition.measure,
                r.definition.unit,
                r.definition.statistic,
                _round(r.value),
                _round(r.mean),
                _round(r.median),
                _round(r.p90),
                float(r.definition.target),
                "" if r.met is None else ("yes" if r.met else "no"),
                r.sample,
                r.unmeasurable,
            ]
            for r in results or []
        ]
    if table == "trend":
        header = ["month", "kpi", "sample", "not_measurable", "mean", "median", "p90"]
        return header, [list(row.values()) for row in trend_rows or []]
    if table == "incidents":
        header = [
            "number", "title", "severity", "status", "detection_source", "customer_facing",
            "impact_started_at", "detected_at", "acknowledged_at", "resolved_at",
        ]  # fmt: skip
        qs = (
            incidents_in_scope(period=scope.period, **scope.filters())
            .order_by("detected_at", "pk")
            .values_list(
                "number",
                "title",
                "severity_id",
                "status",
                "detection_source",
                "customer_facing",
                "impact_started_at",
                "detected_at",
                "acknowledged_at",
                "resolved_at",
            )
        )
        return header, (
            [*row[:5], "yes" if row[5] else "no", *(_iso(moment) for moment in row[6:])]
            for row in qs.iterator(chunk_size=2000)
        )
    assert tables is not None
    simple = {
        "volume_severity": "by_severity",
        "volume_service": "by_service",
        "volume_source": "by_source",
        "breaches": "breaches",
        "causes": "causes",
        "wrong_areas": "areas",
        "actions": "actions",
    }
    if table in simple:
        rows = _count_rows(tables[simple[table]])
        if table == "actions":
            rate = tables["summary"]["actions"].get("completion_rate")
            rows.append(["completion_rate", "Completion rate", _round(rate)])
        return ["key", "label", "count"], rows
    if table == "impact":
        impact = tables["summary"]["customer_impact"]
        return ["key", "value"], [[key, value] for key, value in impact.items()]
    raise DrillError(f"Unknown table {table!r}: one of {', '.join(CSV_TABLES)}.")


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)


def drill_csv(
    incidents: QuerySet[Incident], definition: KpiDefinition | None, zone: tzinfo
) -> tuple[list[str], Iterator[list[Any]]]:
    header = ["number", "title", "severity", "status", "detected_at"]
    if definition is not None:
        header += ["measured", "met"]

    def rows() -> Iterator[list[Any]]:
        for row in drill_rows(incidents.iterator(chunk_size=2000), definition, zone):
            line = [
                row["number"],
                row["title"],
                row["severity"],
                row["status"],
                row["detected"].isoformat(),
            ]
            if definition is not None:
                met = row["met"]
                line += [row["measured"], "" if met is None else ("yes" if met else "no")]
            yield line

    return header, rows()
