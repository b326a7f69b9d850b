"""The KPI API's shapes: the query it reads (validated before anything is computed) and the JSON
it answers. Times are in minutes everywhere, first-contact resolution in percent of the resolved
incidents, satisfaction as the mean 1-5 rating."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from incidents.models import DetectionSource, Service
from incidents.serializers import UserRefSerializer, iso, user_ref

from .models import Measure, MonthlyReport, Statistic
from .selectors import KpiResult, Period, period_month, period_parse
from .services.compute import WHICH, judge
from .services.periods import policy_zone

SEVERITIES = [1, 2, 3, 4]
UNITS = (
    "minutes for the times (detect, respond, resolve), percent for first_contact, score out "
    "of 5 for satisfaction"
)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def current_period() -> Period:
    """This month, in the KPI policy's time zone."""
    zone = policy_zone()
    return period_month(timezone.localtime(timezone.now(), zone).date(), zone=zone)


# --- input ---------------------------------------------------------------------------------------


class KpiQuerySerializer(serializers.Serializer):
    """The filters of ``/api/v1/kpis/`` and of the incidents behind a KPI."""

    period = serializers.CharField(
        required=False,
        max_length=40,
        help_text="YYYY-MM (a month), YYYY-Qn (a quarter), YYYY (a year) or "
        "YYYY-MM-DD..YYYY-MM-DD (days, both included), in the KPI policy's time zone. "
        "Default: the current month.",
    )
    severity = serializers.ChoiceField(
        choices=SEVERITIES, required=False, help_text="Only incidents of this severity level."
    )
    service = serializers.SlugField(
        required=False, max_length=60, help_text="Only incidents affecting this service (slug)."
    )
    source = serializers.ChoiceField(
        choices=DetectionSource.values,
        required=False,
        help_text="Only incidents of this detection source.",
    )

    def validate_period(self, value: str) -> Period:
        try:
            return period_parse(value, zone=self.context.get("zone"))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_service(self, value: str) -> Service:
        service = Service.objects.filter(slug=value).first()
        if service is None:
            raise serializers.ValidationError(f"No service with the slug {value!r}.")
        return service

    def filters(self) -> dict[str, Any]:
        """The period (default: this month) and the filters, as the selectors take them."""
        data = self.validated_data
        return {
            "period": data.get("period") or current_period(),
            "severity": data.get("severity"),
            "service": data.get("service"),
            "source": data.get("source"),
        }


class KpiListQuerySerializer(KpiQuerySerializer):
    by = serializers.ChoiceField(
        choices=["severity"],
        required=False,
        help_text="`severity`: also the figures per severity level (`by_severity`).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("by") == "severity" and attrs.get("severity") is not None:
            raise serializers.ValidationError(
                {"by": ["by=severity gives every severity level: leave out severity."]}
            )
        return attrs


class KpiIncidentsQuerySerializer(KpiQuerySerializer):
    which = serializers.ChoiceField(
        choices=list(WHICH),
        required=False,
        default="sample",
        help_text="sample: the incidents measured; unmeasurable: those counted as not "
        "measurable; met / missed: the measured incidents at or better than the target, or "
        "worse, one by one.",
    )


class MonthSerializer(serializers.Serializer):
    month = serializers.RegexField(r"^\d{4}-\d{2}$", help_text="YYYY-MM.")

    def validate_month(self, value: str) -> date:
        try:
            return date(int(value[:4]), int(value[5:]), 1)
        except ValueError:
            raise serializers.ValidationError(f"{value} is not a month (YYYY-MM).") from None


# --- output --------------------------------------------------------------------------------------


class KpiPeriodSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="2026-11, 2026-Q4, 2026 or 2026-11-03..2026-11-20.")
    start = serializers.DateTimeField(help_text="Inclusive, in the KPI policy's time zone.")
    end = serializers.DateTimeField(help_text="Exclusive, in the KPI policy's time zone.")

    def to_representation(self, period: Period) -> dict[str, Any]:
        return {
            "label": period.label,
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
        }


class KpiFiltersSerializer(serializers.Serializer):
    severity = serializers.IntegerField(allow_null=True)
    service = serializers.CharField(allow_null=True, help_text="The service's slug.")
    source = serializers.CharField(allow_null=True, help_text="The detection source.")

    def to_representation(self, filters: dict[str, Any]) -> dict[str, Any]:
        service = filters.get("service")
        return {
            "severity": filters.get("severity"),
            "service": service.slug if service is not None else None,
            "source": filters.get("source"),
        }


class KpiResultSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    measure = serializers.ChoiceField(choices=Measure.choices)
    unit = serializers.ChoiceField(
        choices=["minutes", "percent", "score"], help_text=f"The unit of every figure: {UNITS}."
    )
    statistic = serializers.ChoiceField(
        choices=Statistic.choices, help_text="The statistic judged against the target."
    )
    higher_is_better = serializers.BooleanField(
        help_text="False for the times (at or under the target meets it), true otherwise."
    )
    value = serializers.FloatField(
        allow_null=True,
        help_text="The judged statistic (mean, median or p90), in the unit; null without a "
        "sample. Rounded to 0.01.",
    )
    mean = serializers.FloatField(allow_null=True, help_text="In the unit; null without sample.")
    median = serializers.FloatField(
        allow_null=True,
        help_text="Nearest rank, in the unit; null without a sample (and for first_contact).",
    )
    p90 = serializers.FloatField(
        allow_null=True,
        help_text="90th percentile, nearest rank, in the unit; null without a sample (and for "
        "first_contact).",
    )
    target = serializers.FloatField(help_text="In the unit (minutes for times).")
    met = serializers.BooleanField(
        allow_null=True, help_text="The value meets the target; null without a sample."
    )
    sample_size = serializers.IntegerField(
        help_text="Incidents measured (survey ratings for satisfaction)."
    )
    unmeasurable = serializers.IntegerField(
        help_text="Incidents counted but not measurable: no impact-start time (detect), not "
        "acknowledged (respond), not resolved (resolve, first_contact), invitations not "
        "answered (satisfaction)."
    )
    severities = serializers.ListField(
        child=serializers.IntegerField(), help_text="The KPI's scope; empty: every severity."
    )
    incidents_url = serializers.URLField(
        help_text="The incidents behind the number, with the same period and filters."
    )

    def to_representation(self, result: KpiResult) -> dict[str, Any]:
        definition = result.definition
        urls = self.context.get("incidents_urls") or {}
        return {
            "slug": definition.slug,
            "name": definition.name,
            "measure": definition.measure,
            "unit": definition.unit,
            "statistic": definition.statistic,
            "higher_is_better": definition.higher_is_better,
            "value": _round(result.value),
            "mean": _round(result.mean),
            "median": _round(result.median),
            "p90": _round(result.p90),
            "target": result.target,
            "met": result.met,
            "sample_size": result.sample,
            "unmeasurable": result.unmeasurable,
            "severities": [int(level) for level in definition.severities or ()],
            "incidents_url": urls.get(definition.slug, ""),
        }


class SeverityKpisSerializer(serializers.Serializer):
    severity = serializers.IntegerField()
    kpis = KpiResultSerializer(many=True, help_text="Every active KPI over this severity alone.")


class KpiListSerializer(serializers.Serializer):
    period = KpiPeriodSerializer()
    filters = KpiFiltersSerializer(help_text="The filters applied, as given.")
    kpis = KpiResultSerializer(many=True, help_text="Every active KPI, in the definitions' order.")
    by_severity = SeverityKpisSerializer(
        many=True, required=False, help_text="With by=severity only: per severity level."
    )


class KpiIncidentSerializer(serializers.Serializer):
    number = serializers.CharField(help_text="The incident's public ID.")
    title = serializers.CharField()
    severity = serializers.IntegerField()
    status = serializers.CharField()
    detected_at = serializers.DateTimeField()
    value = serializers.FloatField(
        allow_null=True,
        help_text="What was measured on this incident: minutes for a time, 100 (resolved on "
        "first contact) or 0 for first_contact, the mean rating for satisfaction; null when "
        "not measurable. Rounded to 0.01.",
    )
    met = serializers.BooleanField(
        allow_null=True, help_text="This incident's value meets the target; null: not measured."
    )
    url = serializers.URLField(help_text="The incident in the API.")

    def to_representation(self, incident: Any) -> dict[str, Any]:
        definition = self.context["definition"]
        measured = incident.measured
        if measured is not None and hasattr(measured, "total_seconds"):
            measured = measured.total_seconds() / 60
        value = None if measured is None else float(measured)
        return {
            "number": incident.number,
            "title": incident.title,
            "severity": incident.severity_id,
            "status": incident.status,
            "detected_at": iso(incident.detected_at),
            "value": _round(value),
            "met": judge(definition, value),
            "url": self.context["incident_url"].replace("__number__", incident.number),
        }


# --- monthly reports -----------------------------------------------------------------------------

REPORT_DATA_HELP = (
    "The report's figures, stored as generated (times in minutes, percentages 0-100, rates "
    "0-1, scores out of 5, null where nothing was measured): schema (1), month, label, period "
    "{start, end, time_zone}, generated_at, version, first_contact_rule {value, label}, kpis "
    "[{slug, name, measure, unit, statistic, target, value, mean, median, p90, met, sample, "
    "unmeasurable, previous {month, value, met, sample}, change, trend}], trend {months, kpis "
    "[{slug, values, mean, median, p90, sample, unmeasurable}]} over 12 months, volume {total, "
    "by_severity, by_service, by_source, trend}, breaches {response, resolution}, causes "
    "[{category, label, count}], wrong_areas [{area, label, count}], actions {total, done, "
    "wont_do, open, overdue, done_on_time, completion_rate, on_time_rate}, customer_impact "
    "{customer_facing, affected_users, impact_hours}, survey {invited, rated, commented, "
    "response_rate, mean, distribution}."
)


class MonthlyReportLinksSerializer(serializers.Serializer):
    self = serializers.URLField(help_text="The report (JSON).")
    markdown = serializers.URLField(help_text="The report as Markdown.")
    pdf = serializers.URLField(help_text="The report as PDF, with its charts.")
    regenerate = serializers.URLField(help_text="POST: generate it afresh.")


class MonthlyReportSummarySerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM.")
    version = serializers.IntegerField(help_text="1 when first generated, +1 per regeneration.")
    generated_at = serializers.DateTimeField(allow_null=True)
    emailed_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was e-mailed to the management contacts (once)."
    )
    links = MonthlyReportLinksSerializer()

    def to_representation(self, report: MonthlyReport) -> dict[str, Any]:
        base = self.context["report_url"].replace("__month__", f"{report.month:%Y-%m}")
        return {
            "month": f"{report.month:%Y-%m}",
            "version": report.version,
            "generated_at": iso(report.generated_at),
            "emailed_at": iso(report.emailed_at),
            "links": {
                "self": base,
                "markdown": f"{base}?format=md",
                "pdf": f"{base}?format=pdf",
                "regenerate": f"{base}regenerate/",
            },
        }


class MonthlyReportSerializer(MonthlyReportSummarySerializer):
    generated_by = UserRefSerializer(
        allow_null=True, help_text="Who regenerated it; null when beat generated it."
    )
    emailed_to = serializers.ListField(
        child=serializers.EmailField(), help_text="The management contacts it was e-mailed to."
    )
    data = serializers.DictField(help_text=REPORT_DATA_HELP)
    markdown = serializers.CharField(help_text="The report in Markdown (without the charts).")

    def to_representation(self, report: MonthlyReport) -> dict[str, Any]:
        return {
            **super().to_representation(report),
            "generated_by": user_ref(report.generated_by),
            "emailed_to": list(report.emailed_to or []),
            "data": report.data,
            "markdown": report.markdown,
        }
