"""The monthly report laid out: its sections as safe HTML with their charts (the admin page and
the PDF), the PDF itself, and the e-mail's text and HTML bodies.

The e-mail's HTML carries tables only: many mail clients show no inline SVG and strip ``data:``
images, and drawing PNGs would need an imaging stack Vigil does not ship; the charts travel in
the attached PDF, which WeasyPrint lays out from the same page as the admin's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from incidents.markdown import html_clean

from ...charts import bar_chart, line_chart, stacked_bar_chart
from ...formatting import format_value
from ...models import MonthlyReport
from .markdown import kpi_rows, month_label, report_sections

# The project's Markdown renderer leaves tables out (staff prose has none); the report is made
# of them. Raw HTML stays disabled and the result goes through the project's sanitiser.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable("table")
SERVICES_CHARTED = 10
STATISTIC_SERIES = (("mean", "Mean"), ("median", "Median"), ("p90", "90th percentile"))


class PdfUnavailable(Exception):
    """This server cannot make PDFs (WeasyPrint or the Pango library it needs is missing)."""


@dataclass(frozen=True)
class HtmlSection:
    key: str
    html: SafeString
    charts: list[SafeString]


def markdown_html(text: str) -> SafeString:
    """Report Markdown as sanitised HTML; the page owns the top heading level."""
    rendered = _markdown.render(text or "")
    for level in (3, 2, 1):
        rendered = rendered.replace(f"<h{level}>", f"<h{level + 1}>")
        rendered = rendered.replace(f"</h{level}>", f"</h{level + 1}>")
    return mark_safe(html_clean(rendered))  # sanitised by nh3 just above


def report_charts(data: dict[str, Any]) -> dict[str, list[SafeString]]:
    """The SVG charts of each section (``kpis``, ``trend``, ``volume``, ``causes``)."""
    trend = data["trend"]
    labels = [month_label(month) for month in trend["months"]]
    kpi_charts = [
        line_chart(
            labels=labels,
            series=[(name, kpi[field]) for field, name in STATISTIC_SERIES],
            target=kpi["target"],
            unit=kpi["unit"],
            title=f"{kpi['name']}: the last 12 months",
        )
        for kpi in trend["kpis"]
    ]
    volume = data["volume"]
    volume_trend = volume["trend"]
    severity_labels = {row["severity"]: row["label"] for row in volume["by_severity"]}
    charts = {
        "trend": [
            stacked_bar_chart(
                labels=[month_label(month) for month in volume_trend["months"]],
                series=[
                    (severity_labels.get(row["severity"], f"Sev {row['severity']}"), row["counts"])
                    for row in volume_trend["by_severity"]
                ],
                title="Incidents per month by severity",
            ),
            *kpi_charts,
        ],
        "volume": [
            bar_chart(
                bars=[(row["label"], row["count"]) for row in volume["by_severity"]],
                title=f"Incidents by severity, {data['label']}",
            ),
            bar_chart(
                bars=[(row["name"], row["count"]) for row in volume["by_service"]][
                    :SERVICES_CHARTED
                ],
                title=f"Incidents by service, {data['label']}",
            ),
        ],
        "causes": [
            bar_chart(
                bars=[(row["label"], row["count"]) for row in data["causes"]],
                title=f"Root-cause categories, {data['label']}",
            )
        ],
    }
    # Every chart function escapes the data it draws: its result is safe markup.
    return {key: [mark_safe(svg) for svg in svgs] for key, svgs in charts.items()}


def report_html_sections(data: dict[str, Any]) -> list[HtmlSection]:
    charts = report_charts(data)
    return [
        HtmlSection(section.key, markdown_html(section.markdown), charts.get(section.key, []))
        for section in report_sections(data)
    ]


def report_filename(report: MonthlyReport, extension: str) -> str:
    return f"vigil-report-{report.month:%Y-%m}.{extension}"


def monthly_report_pdf(*, report: MonthlyReport) -> bytes:
    """The report with its charts as PDF (A4). WeasyPrint may read ``data:`` URLs and Vigil's
    own static files while laying it out, nothing else: no request leaves the server. Raises
    :class:`PdfUnavailable` without WeasyPrint or Pango."""
    from incidents.admin.report_pdf import PdfUnavailable as CorePdfUnavailable
    from incidents.admin.report_pdf import report_pdf

    html = render_to_string(
        "kpis/report/pdf.html",
        {
            "report": report,
            "data": report.data,
            "sections": report_html_sections(report.data),
        },
    )
    try:
        return report_pdf(html=html, base_url=f"{settings.VIGIL_BASE_URL}/")
    except CorePdfUnavailable as exc:
        raise PdfUnavailable(str(exc)) from exc


def report_email_bodies(*, report: MonthlyReport, url: str, pdf_attached: bool) -> tuple[str, str]:
    """The e-mail's plain-text and HTML bodies (the HTML autoescaped by its template)."""
    data = report.data
    completion = (data.get("actions") or {}).get("completion_rate")
    survey = data.get("survey") or {}
    context = {
        "report": report,
        "data": data,
        "kpis": kpi_rows(data),
        "completion": "—" if completion is None else f"{completion * 100:.0f} %",
        "satisfaction": (
            f"{format_value(survey['mean'], 'score')} from {survey['rated']} ratings"
            if survey.get("mean") is not None
            else "no ratings"
        ),
        "url": url,
        "pdf_attached": pdf_attached,
        "pdf_name": report_filename(report, "pdf"),
    }
    return (
        render_to_string("kpis/report/email.txt", context),
        render_to_string("kpis/report/email.html", context),
    )
