"""The KPIs in the staff API, under /api/v1/:

* ``kpis/``: every active KPI over a period (default: this month, in the KPI policy's time
  zone), optionally one severity, one service, one detection source; ``by=severity`` adds the
  same per severity level;
* ``kpis/{slug}/incidents/``: the incidents behind a KPI's number (the sample, the unmeasurable
  ones, those that met or missed the target), cursor-paginated;
* ``reports/monthly/``, ``reports/monthly/{month}/`` (JSON, Markdown or PDF) and
  ``reports/monthly/{month}/regenerate/``: the stored monthly reports.

Times are in minutes. Reading needs a staff user with ``kpis.view_kpidefinition`` (every role
group holds it); the incidents behind a number also need ``incidents.view_incident``, the
reports ``kpis.view_monthlyreport``, regenerating one ``kpis.regenerate_monthlyreport`` (the
Incident Manager). A bad filter or month is a 400 naming the field, with the incidents API's
error shape, and computes and changes nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, ErrorSerializer, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.models import DetectionSource, Incident, SeverityLevel

from .models import KpiDefinition, MonthlyReport
from .selectors import kpi_incidents, kpi_results, period_month
from .serializers import (
    SEVERITIES,
    UNITS,
    KpiFiltersSerializer,
    KpiIncidentSerializer,
    KpiIncidentsQuerySerializer,
    KpiListQuerySerializer,
    KpiListSerializer,
    KpiPeriodSerializer,
    KpiResultSerializer,
    MonthlyReportSerializer,
    MonthlyReportSummarySerializer,
    MonthSerializer,
)
from .services.compute import WHICH
from .services.periods import next_month, policy_zone
from .services.reports import (
    PdfUnavailable,
    monthly_report_generate,
    monthly_report_pdf,
    report_filename,
)

TAGS = ["kpis"]


class StaffWithPerms(BasePermission):
    """A staff user holding every permission the view names in ``required_perms``."""

    message = "Your roles do not allow you to view the KPIs."

    def has_permission(self, request, view) -> bool:
        self.message = getattr(view, "permission_message", self.message)
        user = request.user
        return bool(
            user and user.is_authenticated and user.is_staff and user.has_perms(view.required_perms)
        )


class KpiAPIView(VigilAPIView):
    permission_classes = [StaffWithPerms]
    required_perms: tuple[str, ...] = ("kpis.view_kpidefinition",)
    filter_backends: list = []


FILTER_PARAMETERS = [
    OpenApiParameter(
        "period",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="YYYY-MM (a month), YYYY-Qn (a quarter), YYYY (a year) or "
        "YYYY-MM-DD..YYYY-MM-DD (days, both included), in the KPI policy's time zone; an "
        "incident belongs to the period holding its detection time. Default: this month.",
    ),
    OpenApiParameter(
        "severity",
        OpenApiTypes.INT,
        OpenApiParameter.QUERY,
        enum=SEVERITIES,
        description="Only incidents of this severity. A KPI scoped to other severities has no "
        "sample then.",
    ),
    OpenApiParameter(
        "service",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="A service's slug: only incidents affecting it.",
    ),
    OpenApiParameter(
        "source",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        enum=DetectionSource.values,
        description="Only incidents of this detection source.",
    ),
]


def _query(serializer_class: type, request: Request) -> Any:
    query = serializer_class(data=request.query_params, context={"zone": policy_zone()})
    query.is_valid(raise_exception=True)
    return query


def _incidents_urls(request: Request, filters: dict[str, Any], slugs: list[str]) -> dict[str, str]:
    """Each KPI's drill-down link, carrying the period and filters (one reverse for all)."""
    params = {"period": filters["period"].label}
    if filters["severity"] is not None:
        params["severity"] = filters["severity"]
    if filters["service"] is not None:
        params["service"] = filters["service"].slug
    if filters["source"]:
        params["source"] = filters["source"]
    template = request.build_absolute_uri(reverse("kpis-api:kpi-incidents", args=["__slug__"]))
    query = urlencode(params)
    return {slug: f"{template.replace('__slug__', slug)}?{query}" for slug in slugs}


def _kpis(request: Request, filters: dict[str, Any]) -> list[dict[str, Any]]:
    results = kpi_results(**filters)
    urls = _incidents_urls(request, filters, [r.definition.slug for r in results])
    return KpiResultSerializer(results, many=True, context={"incidents_urls": urls}).data


class KpiListView(KpiAPIView):
    @extend_schema(
        tags=TAGS,
        operation_id="kpis_list",
        summary="The KPIs against their targets",
        description=(
            "Every active KPI over the period and filters: the judged statistic (`value`), "
            f"mean, median and 90th percentile, in the KPI's unit ({UNITS}), the target in the "
            "same unit, whether it is met (null without a sample), the sample size and the "
            "incidents counted but not measurable. Cancelled incidents and duplicates never "
            "count. With `by=severity`, `by_severity` gives the same per severity level. A bad "
            "period, severity, service or source is a 400 naming the field."
        ),
        parameters=[
            *FILTER_PARAMETERS,
            OpenApiParameter(
                "by",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["severity"],
                description="`severity`: add `by_severity`, the KPIs per severity level "
                "(not with `severity`).",
            ),
        ],
        responses={200: KpiListSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        query = _query(KpiListQuerySerializer, request)
        filters = query.filters()
        body: dict[str, Any] = {
            "period": KpiPeriodSerializer(filters["period"]).data,
            "filters": KpiFiltersSerializer(filters).data,
            "kpis": _kpis(request, filters),
        }
        if query.validated_data.get("by") == "severity":
            levels = SeverityLevel.objects.order_by("level").values_list("level", flat=True)
            body["by_severity"] = [
                {"severity": level, "kpis": _kpis(request, {**filters, "severity": level})}
                for level in levels
            ]
        return Response(body)


class IncidentPagination(VigilCursorPagination):
    ordering = ("-detected_at", "-id")


SLUG_PARAMETER = OpenApiParameter(
    "slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The KPI's slug, e.g. mttd."
)


class KpiIncidentsView(KpiAPIView, GenericAPIView):
    required_perms = ("kpis.view_kpidefinition", "incidents.view_incident")
    queryset = Incident.objects.none()  # names the model for the schema generator
    serializer_class = KpiIncidentSerializer
    pagination_class = IncidentPagination

    @extend_schema(
        tags=TAGS,
        operation_id="kpis_incidents",
        summary="The incidents behind a KPI's number",
        description=(
            "The incidents of the period and filters that make the KPI's figure, latest "
            "detected first, cursor-paginated, each with what was measured on it (minutes for "
            "a time). `which`: the sample (default), the unmeasurable ones, or the measured "
            "ones that met or missed the target one by one. An unknown KPI is a 404."
        ),
        parameters=[
            SLUG_PARAMETER,
            *FILTER_PARAMETERS,
            OpenApiParameter(
                "which",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(WHICH),
                description="sample (default), unmeasurable, met or missed.",
            ),
        ],
        responses={200: KpiIncidentSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, slug: str) -> Response:
        definition = KpiDefinition.objects.filter(slug=slug[:50]).first()
        if definition is None:
            raise Http404
        query = _query(KpiIncidentsQuerySerializer, request)
        rows: QuerySet = kpi_incidents(
            definition=definition, which=query.validated_data["which"], **query.filters()
        )
        page = self.paginate_queryset(rows)
        incident_url = request.build_absolute_uri(
            reverse("api-incident-detail", args=["__number__"])
        )
        context = {"definition": definition, "incident_url": incident_url}
        return self.get_paginated_response(
            KpiIncidentSerializer(page, many=True, context=context).data
        )


# --- monthly reports -----------------------------------------------------------------------------

REPORT_TAGS = ["monthly reports"]
MONTH_PARAMETER = OpenApiParameter(
    "month", OpenApiTypes.STR, OpenApiParameter.PATH, description="The month reported, YYYY-MM."
)
PDF_UNAVAILABLE = OpenApiResponse(
    response=ErrorSerializer,
    description="This server cannot make PDFs (WeasyPrint or Pango missing); JSON and Markdown "
    "still work.",
)


def _json_errors(*codes: int) -> dict[tuple[int, str], OpenApiResponse]:
    """Error responses are JSON whatever format the request asked for."""
    return {
        (code, "application/json"): response for code, response in error_responses(*codes).items()
    }


class MarkdownRenderer(BaseRenderer):
    media_type = "text/markdown"
    format = "md"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return data.encode("utf-8") if isinstance(data, str) else data


class PdfRenderer(BaseRenderer):
    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return data


class ReportAPIView(KpiAPIView):
    required_perms = ("kpis.view_monthlyreport",)
    permission_message = "Your roles do not allow you to view the monthly reports."

    def report_context(self, request: Request) -> dict[str, Any]:
        url = reverse("kpis-api:monthly-report-detail", args=["__month__"])
        return {"report_url": request.build_absolute_uri(url)}


def _month(text: str) -> date:
    query = MonthSerializer(data={"month": text[:20]})
    query.is_valid(raise_exception=True)
    return query.validated_data["month"]


def _report_or_404(month: date) -> MonthlyReport:
    report = (
        MonthlyReport.objects.select_related("generated_by")
        .filter(month=month, generated_at__isnull=False)
        .first()
    )
    if report is not None:
        return report
    due = next_month(month)
    if period_month(month).end > timezone.now():
        raise NotFound(
            f"The report of {month:%Y-%m} is generated on {due:%Y-%m-%d}, the 1st of the next "
            "month, once the month has ended."
        )
    raise NotFound(
        f"No report has been generated for {month:%Y-%m}: reports are generated on the 1st of "
        f"the next month ({due:%Y-%m-%d} for this one). With the permission to regenerate "
        "reports, POST to its regenerate/ link generates it now."
    )


class ReportPagination(VigilCursorPagination):
    page_size = 24
    ordering = ("-month",)


class MonthlyReportListView(ReportAPIView, GenericAPIView):
    queryset = MonthlyReport.objects.none()  # names the model for the schema generator
    serializer_class = MonthlyReportSummarySerializer
    pagination_class = ReportPagination

    @extend_schema(
        tags=REPORT_TAGS,
        operation_id="monthly_reports_list",
        summary="List the monthly reports",
        description="The generated monthly reports, latest month first, cursor-paginated, with "
        "their links (JSON, Markdown, PDF).",
        responses={200: MonthlyReportSummarySerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        rows = MonthlyReport.objects.filter(generated_at__isnull=False).only(
            "month", "version", "generated_at", "emailed_at"
        )
        page = self.paginate_queryset(rows)
        serializer = MonthlyReportSummarySerializer(
            page, many=True, context=self.report_context(request)
        )
        return self.get_paginated_response(serializer.data)


class MonthlyReportDetailView(ReportAPIView):
    renderer_classes = [JSONRenderer, MarkdownRenderer, PdfRenderer]

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        # An error is JSON with the API's error shape even when Markdown or PDF was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            # DRF answers an unknown ?format= with a 404, as if the report did not exist.
            raise ValidationError({"format": ["One of json, md, pdf."]}) from None

    @extend_schema(
        tags=REPORT_TAGS,
        operation_id="monthly_reports_retrieve",
        summary="Read a monthly report (JSON, Markdown or PDF)",
        description=(
            "The stored report as generated: JSON by default; Markdown with `?format=md` or "
            "`Accept: text/markdown`; PDF with the charts with `?format=pdf` or `Accept: "
            "application/pdf`. `data` holds the figures as stored: "
            "`kpis` (each KPI's value, mean, median, p90, target, met, sample, unmeasurable, "
            "the previous month and the trend), `trend` (12 months), `volume` (by severity, "
            "service, source), `breaches`, `causes`, `wrong_areas`, `actions`, "
            "`customer_impact`, `survey`; times in minutes. A month not generated yet is a 404 "
            "saying when it will be (the 1st of the next month); a malformed month a 400."
        ),
        parameters=[
            MONTH_PARAMETER,
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["json", "md", "pdf"],
                description="json (default), md or pdf; overrides the Accept header.",
            ),
        ],
        responses={
            (200, "application/json"): MonthlyReportSerializer,
            (200, "text/markdown"): OpenApiTypes.STR,
            (200, "application/pdf"): OpenApiTypes.BINARY,
            **_json_errors(*READ_ERRORS, 404),
            (503, "application/json"): PDF_UNAVAILABLE,
        },
    )
    def get(self, request: Request, month: str) -> Response:
        report = _report_or_404(_month(month))
        kind = request.accepted_renderer.format
        if kind == "md":
            disposition = f'inline; filename="{report_filename(report, "md")}"'
            return Response(report.markdown, headers={"Content-Disposition": disposition})
        if kind == "pdf":
            try:
                pdf = monthly_report_pdf(report=report)
            except PdfUnavailable:
                raise PdfNotAvailable() from None
            disposition = f'attachment; filename="{report_filename(report, "pdf")}"'
            return Response(pdf, headers={"Content-Disposition": disposition})
        return Response(MonthlyReportSerializer(report, context=self.report_context(request)).data)


class PdfNotAvailable(APIException):
    status_code = 503
    default_code = "pdf_unavailable"
    default_detail = "This server cannot make PDFs (WeasyPrint or Pango is missing)."


class MonthlyReportRegenerateView(ReportAPIView):
    required_perms = ("kpis.view_monthlyreport", "kpis.regenerate_monthlyreport")
    permission_message = "Your roles do not allow you to regenerate monthly reports."

    @extend_schema(
        tags=REPORT_TAGS,
        operation_id="monthly_reports_regenerate",
        summary="Generate a monthly report afresh",
        description=(
            "Recomputes the month's stored rollups if stale, then replaces the report's data "
            "and Markdown and bumps its version (generates it if there was none). Never "
            "e-mails it again. Needs kpis.regenerate_monthlyreport (the Incident Manager). A "
            "month that has not ended yet in the KPI policy's time zone is a 400."
        ),
        parameters=[MONTH_PARAMETER],
        request=None,
        responses={200: MonthlyReportSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, month: str) -> Response:
        first = _month(month)
        try:
            report = monthly_report_generate(month=first, actor=request.user)
        except ValueError as exc:
            raise ValidationError({"month": [str(exc)]}) from None
        report = _report_or_404(report.month)
        return Response(MonthlyReportSerializer(report, context=self.report_context(request)).data)
