"""Generating a monthly report and e-mailing it once, under the report row's lock."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from escalation.outbox import notification_enqueue

from ...models import KpiPolicy, MonthlyReport
from ..periods import month_start, months_back, period_month
from ..rollups import month_of
from .data import report_data, rollups_refresh
from .markdown import report_markdown
from .render import PdfUnavailable, monthly_report_pdf, report_email_bodies, report_filename

logger = logging.getLogger(__name__)

TEMPLATE = "kpis_monthly_report"


@dataclass
class EmailOutcome:
    """What one e-mailing did: the addresses sent to now, those sent to before, those in the
    policy that are not e-mail addresses (skipped), and whether the PDF went along."""

    sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    pdf_attached: bool = False

    @property
    def no_recipients(self) -> bool:
        return not (self.sent or self.already)


def idempotency_key(month: date, address: str) -> str:
    return f"kpis-monthly-report:{month:%Y-%m}:{address.strip().lower()}"


def report_recipients() -> tuple[list[str], list[str]]:
    """The policy's report recipients (one address per line), lowercased, each once, in order;
    and the lines that are not e-mail addresses."""
    text = KpiPolicy.objects.filter(pk=1).values_list("report_recipients", flat=True).first()
    valid: list[str] = []
    invalid: list[str] = []
    for line in (text or "").splitlines():
        address = line.strip().lower()
        if not address:
            continue
        try:
            validate_email(address)
        except ValidationError:
            invalid.append(line.strip())
            continue
        if address not in valid:
            valid.append(address)
    return valid, invalid


def last_ended_month(now: datetime | None = None) -> date:
    """The last calendar month that has ended in the KPI policy's time zone."""
    return months_back(month_of(now or timezone.now()), 1)


def _check_month(month: date, now: datetime) -> date:
    first = month_start(month)
    if period_month(first).end > now:
        raise ValueError(f"{first:%B %Y} has not ended yet: only a past month has a report.")
    return first


def _locked(month: date) -> MonthlyReport:
    report, _ = MonthlyReport.objects.get_or_create(month=month)
    return MonthlyReport.objects.select_for_update().get(pk=report.pk)


def _generate(report: MonthlyReport, actor: Any, now: datetime) -> MonthlyReport:
    rollups_refresh(month=report.month)
    report.version += 1
    report.data = report_data(month=report.month, version=report.version, now=now)
    report.markdown = report_markdown(report.data)
    report.generated_at = now
    report.generated_by = actor if getattr(actor, "pk", None) else None
    report.save(update_fields=["version", "data", "markdown", "generated_at", "generated_by"])
    return report


@transaction.atomic
def monthly_report_generate(
    *, month: date, actor: Any = None, now: datetime | None = None
) -> MonthlyReport:
    """Generate (or regenerate) the report of ``month`` (any day of it; the month must have
    ended in the policy's time zone, else ValueError). Recomputes the stored rollups of the
    month and of the trend's months first when they are stale or missing, then replaces the
    report's data and Markdown and bumps its version. Holds the report row's lock, so two runs
    take turns. Never e-mails: a regenerated report is not sent again."""
    now = now or timezone.now()
    first = _check_month(month, now)
    return _generate(_locked(first), actor, now)


def _report_url(report: MonthlyReport) -> str:
    path = reverse("admin:kpis_monthlyreport_change", args=[report.pk])
    return f"{settings.VIGIL_BASE_URL}{path}"


def _email(report: MonthlyReport, now: datetime) -> EmailOutcome:
    recipients, invalid = report_recipients()
    done = {address.lower() for address in report.emailed_to or []}
    outcome = EmailOutcome(
        already=[a for a in recipients if a in done],
        invalid=invalid,
    )
    new = [address for address in recipients if address not in done]
    if not new:
        return outcome
    attachments = []
    try:
        pdf = monthly_report_pdf(report=report)
    except PdfUnavailable:
        # The figures still go out (tables in the HTML, the link to the page); the text says
        # the PDF is missing rather than the report never arriving.
        logger.exception("Monthly report %s e-mailed without its PDF", report)
    else:
        attachments.append(
            {
                "filename": report_filename(report, "pdf"),
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(pdf).decode("ascii"),
            }
        )
    outcome.pdf_attached = bool(attachments)
    text, html = report_email_bodies(
        report=report, url=_report_url(report), pdf_attached=outcome.pdf_attached
    )
    for address in new:
        notification_enqueue(
            incident=None,
            channel="email",
            recipient=address,
            subject=f"Vigil incident report: {report.data.get('label', report.month)}",
            body=text,
            template=TEMPLATE,
            reason=f"Monthly report {report.month:%Y-%m}",
            idempotency_key=idempotency_key(report.month, address),
            context={"html": html, "attachments": attachments},
        )
    report.emailed_to = [*(report.emailed_to or []), *new]
    report.emailed_at = report.emailed_at or now
    report.save(update_fields=["emailed_to", "emailed_at"])
    outcome.sent = new
    return outcome


@transaction.atomic
def monthly_report_email(*, report: MonthlyReport, now: datetime | None = None) -> EmailOutcome:
    """E-mail the report (text, HTML tables and the PDF with the charts) through the outbox to
    each of the policy's recipients not sent to yet, and record them (``emailed_to``;
    ``emailed_at`` is set by the first sending only). Idempotent: each address gets one message
    per month whatever the report's version (the outbox key is the month and the address), so
    running it again sends nothing, and after an address is added it sends to that address
    only. Without recipients nothing is sent and the report stays not e-mailed."""
    now = now or timezone.now()
    locked = MonthlyReport.objects.select_for_update().get(pk=report.pk)
    if locked.generated_at is None:
        raise ValueError(f"The report of {locked.month:%B %Y} has not been generated yet.")
    return _email(locked, now)


@dataclass(frozen=True)
class MonthlyRun:
    report: MonthlyReport
    generated: bool
    email: EmailOutcome | None


@transaction.atomic
def monthly_report_run(*, now: datetime | None = None) -> MonthlyRun:
    """The beat's monthly job: the last month that has ended in the policy's time zone gets its
    report, generated (again, while it has not been e-mailed, so the figures sent are fresh)
    and e-mailed. Once it has been e-mailed, running again does nothing: two beats at once
    take turns on the report row's lock and the second finds it sent."""
    now = now or timezone.now()
    locked = _locked(last_ended_month(now))
    if locked.emailed_at is not None:
        return MonthlyRun(locked, generated=False, email=None)
    report = _generate(locked, None, now)
    outcome = _email(report, now)
    if outcome.no_recipients:
        logger.warning(
            "Monthly report %s generated and not e-mailed: the KPI policy lists no recipient",
            report,
        )
    return MonthlyRun(report, generated=True, email=outcome)
