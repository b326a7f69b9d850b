"""The monthly reports in the admin: the list (month, version, generated, e-mailed, recipients)
and each report's read-only page (the Markdown rendered through the project's sanitiser, with
the charts), its downloads (Markdown, PDF, CSV of the rows behind each table) and the actions
that call the report services: regenerate, generate a past month, send to the recipients not
sent to yet (permission ``kpis.regenerate_monthlyreport``, POST with CSRF)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from ..models import MonthlyReport
from ..services.reports import (
    TABLES,
    PdfUnavailable,
    last_ended_month,
    monthly_report_email,
    monthly_report_generate,
    monthly_report_pdf,
    report_csv,
    report_filename,
    report_html_sections,
    report_recipients,
)

REGENERATE_PERMISSION = "kpis.regenerate_monthlyreport"
TABLE_TITLES = {
    "kpis": "KPIs",
    "trend": "KPI trend (12 months)",
    "volume_trend": "Incidents per month",
    "volume_severity": "Volume by severity",
    "volume_service": "Volume by service",
    "volume_source": "Volume by detection source",
    "breaches": "SLA breaches",
    "causes": "Root-cause categories",
    "wrong_areas": "What went wrong",
    "actions": "Action items",
    "impact": "Customer impact",
    "survey": "Survey",
}


@admin.register(MonthlyReport)
class MonthlyReportAdmin(admin.ModelAdmin):
    """Reports change only through the report services: no add, edit or delete form."""

    list_display = ("month_link", "version", "generated_at", "generated_by", "emailed_at",
                    "recipients")  # fmt: skip
    list_select_related = ("generated_by",)
    date_hierarchy = "month"
    change_list_template = "kpis/admin/report_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Month", ordering="month")
    def month_link(self, obj: MonthlyReport) -> str:
        return format_html('<a href="{}">{}</a>', self._url("change", obj.pk), f"{obj.month:%B %Y}")

    @admin.display(description="E-mailed to")
    def recipients(self, obj: MonthlyReport) -> str:
        if not obj.emailed_to:
            return "—"
        return format_html_join(", ", "{}", ((address,) for address in obj.emailed_to))

    # --- URLs ------------------------------------------------------------------------------

    def _url(self, name: str, *args: Any) -> str:
        return reverse(f"admin:kpis_monthlyreport_{name}", args=args)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("generate/", wrap(self.generate_view), name="kpis_monthlyreport_generate"),
            path("<int:pk>/markdown/", wrap(self.markdown_view),
                 name="kpis_monthlyreport_markdown"),
            path("<int:pk>/pdf/", wrap(self.pdf_view), name="kpis_monthlyreport_pdf"),
            path("<int:pk>/csv/", wrap(self.csv_view), name="kpis_monthlyreport_csv"),
            path("<int:pk>/regenerate/", wrap(self.regenerate_view),
                 name="kpis_monthlyreport_regenerate"),
            path("<int:pk>/send/", wrap(self.send_view), name="kpis_monthlyreport_send"),
            *super().get_urls(),
        ]  # fmt: skip

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra_context = {
            **(extra_context or {}),
            "can_generate": request.user.has_perm(REGENERATE_PERMISSION),
            "generate_url": self._url("generate"),
            "default_month": f"{last_ended_month():%Y-%m}",
        }
        return super().changelist_view(request, extra_context)

    # --- views -----------------------------------------------------------------------------

    def _report(self, request: HttpRequest, pk: Any) -> MonthlyReport:
        if not self.has_view_permission(request):
            raise PermissionDenied
        report = get_object_or_404(MonthlyReport.objects.select_related("generated_by"), pk=pk)
        if report.generated_at is None:
            raise Http404("This report has not been generated.")
        return report

    def _require_regenerate(self, request: HttpRequest) -> None:
        if not request.user.has_perm(REGENERATE_PERMISSION):
            raise PermissionDenied

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        report = self._report(request, object_id)
        recipients, invalid = report_recipients()
        sent = {address.lower() for address in report.emailed_to or []}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Incident report: {report.month:%B %Y}",
            "report": report,
            "data": report.data,
            "sections": report_html_sections(report.data),
            "can_regenerate": request.user.has_perm(REGENERATE_PERMISSION),
            "not_sent": [address for address in recipients if address not in sent],
            "invalid_recipients": invalid,
            "has_recipients": bool(recipients),
            "tables": [
                (TABLE_TITLES.get(name, name), self._url("csv", report.pk) + f"?table={name}")
                for name in TABLES
            ],
            "markdown_url": self._url("markdown", report.pk),
            "pdf_url": self._url("pdf", report.pk),
            "regenerate_url": self._url("regenerate", report.pk),
            "send_url": self._url("send", report.pk),
            "changelist_url": self._url("changelist"),
        }
        return TemplateResponse(request, "kpis/admin/report_detail.html", context)

    def markdown_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        report = self._report(request, pk)
        response = HttpResponse(report.markdown, content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(
            True, report_filename(report, "md")
        )
        return response

    def pdf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        report = self._report(request, pk)
        try:
            pdf = monthly_report_pdf(report=report)
        except PdfUnavailable:
            messages.error(
                request,
                "This server cannot make PDFs (WeasyPrint or the Pango library is missing); "
                "download the Markdown or print the page instead.",
            )
            return redirect(self._url("change", report.pk))
        response = HttpResponse(pdf, content_type="application/pdf")
        response["Content-Disposition"] = content_disposition_header(
            True, report_filename(report, "pdf")
        )
        return response

    def csv_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        report = self._report(request, pk)
        table = request.GET.get("table", "")
        if table not in TABLES:
            return HttpResponseBadRequest(
                f"Unknown table {table[:40]!r}; one of: {', '.join(TABLES)}.",
                content_type="text/plain; charset=utf-8",
            )
        response = HttpResponse(
            report_csv(data=report.data, table=table), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = content_disposition_header(
            True, f"vigil-report-{report.month:%Y-%m}-{table}.csv"
        )
        return response

    def regenerate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_POST(self._regenerate)(request, pk)

    def _regenerate(self, request: HttpRequest, pk: int) -> HttpResponse:
        report = self._report(request, pk)
        self._require_regenerate(request)
        report = monthly_report_generate(month=report.month, actor=request.user)
        messages.success(
            request,
            f"The report of {report.month:%B %Y} was regenerated (version {report.version}). "
            "It is not e-mailed again.",
        )
        return redirect(self._url("change", report.pk))

    def send_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_POST(self._send)(request, pk)

    def _send(self, request: HttpRequest, pk: int) -> HttpResponse:
        report = self._report(request, pk)
        self._require_regenerate(request)
        outcome = monthly_report_email(report=report)
        if outcome.sent:
            messages.success(request, f"Sent to {', '.join(outcome.sent)}.")
        elif outcome.no_recipients:
            messages.warning(request, "Not sent: the KPI policy lists no report recipient.")
        else:
            messages.info(request, "Every recipient has been sent this report already.")
        if outcome.invalid:
            messages.warning(
                request,
                "Not e-mail addresses, skipped: " + ", ".join(outcome.invalid),
            )
        return redirect(self._url("change", report.pk))

    def generate_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        self._require_regenerate(request)
        value = (request.POST.get("month") or "").strip() if request.method == "POST" else ""
        error = ""
        if request.method == "POST":
            month = _parse_month(value)
            if month is None:
                error = "Enter a month as YYYY-MM, e.g. 2026-11."
            else:
                try:
                    report = monthly_report_generate(month=month, actor=request.user)
                except ValueError as exc:
                    error = str(exc)
                else:
                    messages.success(
                        request,
                        f"The report of {report.month:%B %Y} was generated "
                        f"(version {report.version}).",
                    )
                    return redirect(self._url("change", report.pk))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Generate a monthly report",
            "month": value or f"{last_ended_month():%Y-%m}",
            "error": error,
            "changelist_url": self._url("changelist"),
            "generate_url": self._url("generate"),
        }
        return TemplateResponse(
            request, "kpis/admin/report_generate.html", context, status=400 if error else 200
        )


def _parse_month(value: str) -> date | None:
    match = re.fullmatch(r"(\d{4})-(\d{2})", value)
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        return None
    return date(int(match[1]), int(match[2]), 1)
