"""The monthly report (§9.2, §8.3): its figures from incidents with a known history, its Markdown
and PDF, and the beat task that generates the previous month's report on the 1st and e-mails it
(HTML and the PDF) through the outbox once per month and address."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from pypdf import PdfReader

from escalation.models import Notification, NotificationStatus
from escalation.services import notification_send
from kpis.models import KpiPolicy, MonthlyReport
from kpis.services.reports import (
    monthly_report_email,
    monthly_report_generate,
    monthly_report_pdf,
)
from kpis.tasks import monthly_report_task
from tests.factories import ServiceFactory

from .history import incident_at

pytestmark = pytest.mark.django_db

NOV = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
FIRST_OF_DEC = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def november():
    """Three November incidents, one in October, one in December."""
    checkout = ServiceFactory(slug="checkout", name="Pay|ments *checkout*")
    incident_at(
        NOV,
        severity=1,
        impact_before=timedelta(minutes=4),
        ack_after=timedelta(minutes=10),
        resolve_after=timedelta(hours=2),
        services=[checkout],
    )
    incident_at(
        NOV + timedelta(days=7),
        severity=2,
        impact_before=timedelta(minutes=8),
        ack_after=timedelta(minutes=20),
        resolve_after=timedelta(hours=6),
        escalated=True,
        source="customer_report",
    )
    incident_at(
        NOV + timedelta(days=17),
        severity=3,
        impact_before=None,
        ack_after=timedelta(minutes=5),
        resolve_after=timedelta(hours=1),
    )
    incident_at(datetime(2026, 10, 15, 9, 0, tzinfo=UTC), ack_after=timedelta(minutes=30))
    incident_at(datetime(2026, 12, 1, 0, 30, tzinfo=UTC), ack_after=timedelta(minutes=1))
    return checkout


# A PDF as small as WeasyPrint can make, for the tests about sending rather than layout (laying
# out the real report takes seconds); the first sending test attaches the real one.
TINY_PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@pytest.fixture
def quick_pdf(monkeypatch):
    monkeypatch.setattr(
        "kpis.services.reports.generate.monthly_report_pdf", lambda *, report: TINY_PDF
    )


def recipients(text: str) -> None:
    KpiPolicy.objects.filter(pk=1).update(report_recipients=text)


def report_rows():
    return Notification.objects.filter(idempotency_key__startswith="kpis-monthly-report:")


def deliver() -> list:
    """Send every pending report e-mail as the outbox's worker would; the new messages."""
    before = len(mail.outbox)
    for pk in report_rows().filter(status=NotificationStatus.PENDING).values_list("pk", flat=True):
        assert notification_send(notification_id=pk).result == "sent"
    return mail.outbox[before:]


def generate(month=date(2026, 11, 1), **kwargs) -> MonthlyReport:
    with time_machine.travel(FIRST_OF_DEC, tick=False):
        return monthly_report_generate(month=month, **kwargs)


def kpi(report: MonthlyReport, slug: str) -> dict:
    return next(row for row in report.data["kpis"] if row["slug"] == slug)


# --- figures -------------------------------------------------------------------------------------


def test_figures_come_from_the_months_incidents(november):
    report = generate()

    data = report.data
    assert (data["month"], data["label"], data["version"]) == ("2026-11", "November 2026", 1)
    assert data["period"]["start"].startswith("2026-11-01T00:00:00")
    assert data["period"]["end"].startswith("2026-12-01T00:00:00")
    assert data["volume"]["total"] == 3
    assert [(r["severity"], r["count"]) for r in data["volume"]["by_severity"]] == [
        (1, 1),
        (2, 1),
        (3, 1),
    ]
    assert [(r["slug"], r["count"]) for r in data["volume"]["by_service"]] == [("checkout", 1)]
    assert {r["source"]: r["count"] for r in data["volume"]["by_source"]} == {
        "monitoring": 2,
        "customer_report": 1,
    }

    respond = kpi(report, "time-to-respond")
    assert respond["value"] == pytest.approx((10 + 20 + 5) / 3, abs=0.01)
    assert (respond["median"], respond["p90"]) == (10, 20)
    assert (respond["sample"], respond["unmeasurable"], respond["met"]) == (3, 0, True)
    # October's one incident took 30 minutes: November is better.
    assert respond["previous"] == {"month": "2026-10", "value": 30, "met": False, "sample": 1}
    assert respond["trend"] == "better"

    detect = kpi(report, "mttd")
    assert (detect["sample"], detect["unmeasurable"]) == (2, 1)  # no impact start: not measurable
    assert detect["value"] == 6 and detect["met"] is False
    resolve = kpi(report, "time-to-resolve-sev1")
    assert (resolve["value"], resolve["sample"], resolve["met"]) == (120, 1, True)
    first_contact = kpi(report, "first-contact-resolution")
    assert first_contact["value"] == pytest.approx(200 / 3, abs=0.01)  # the escalated one missed
    assert first_contact["met"] is False

    trend = data["trend"]
    assert len(trend["months"]) == 12
    assert (trend["months"][0], trend["months"][-1]) == ("2025-12", "2026-11")
    respond_trend = next(k for k in trend["kpis"] if k["slug"] == "time-to-respond")
    assert respond_trend["values"][-2:] == [30, respond["value"]]
    assert respond_trend["values"][0] is None
    assert data["volume"]["trend"]["totals"][-2:] == [1, 3]
    assert report.generated_by is None and report.generated_at == FIRST_OF_DEC


def test_the_rollups_of_a_stale_month_are_recomputed_first(november):
    generate()
    incident_at(NOV + timedelta(days=1), severity=4, ack_after=timedelta(minutes=2))
    from kpis.services.rollups import kpi_months_mark_stale

    kpi_months_mark_stale(months=[date(2026, 11, 1)])
    report = generate()

    assert report.version == 2
    respond_trend = next(k for k in report.data["trend"]["kpis"] if k["slug"] == "time-to-respond")
    assert respond_trend["sample"][-1] == 4
    assert kpi(report, "time-to-respond")["sample"] == 4


def test_a_month_that_has_not_ended_has_no_report(november):
    with pytest.raises(ValueError, match="has not ended"):
        generate(month=date(2026, 12, 1))
    assert not MonthlyReport.objects.exists()


def test_markdown_has_the_tables_with_names_escaped(november):
    markdown = generate().markdown

    assert markdown.startswith("# Incident report: November 2026\n")
    assert "## KPIs against their targets (§9.1)" in markdown
    assert "| Time to respond" in markdown or "| Mean Time to Respond" in markdown
    assert "**met**" in markdown and "**missed**" in markdown
    assert "| Pay\\|ments \\*checkout\\* | 1 |" in markdown
    assert "## Trends: the last 12 months" in markdown
    assert "| Nov 2026 |" in markdown
    assert "Sev 1" in markdown
    assert "## Common root causes" in markdown
    assert "## Customer impact" in markdown


def test_the_pdf_parses_and_names_the_month_and_the_kpis(november):
    report = generate()

    pdf = monthly_report_pdf(report=report)

    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert "November 2026" in text
    assert kpi(report, "time-to-respond")["name"] in " ".join(text.split())
    assert len(reader.pages) >= 2


# --- the beat task and the e-mail ----------------------------------------------------------------


def test_the_task_on_the_first_generates_the_previous_month_and_mails_it_once(november):
    recipients("Boss@Example.org\nops@example.org\n\nnot an address\nboss@example.org\n")

    with time_machine.travel(FIRST_OF_DEC, tick=False):
        outcome = monthly_report_task()

    report = MonthlyReport.objects.get()
    assert report.month == date(2026, 11, 1) and report.version == 1
    assert outcome == "2026-11: generated (version 1), e-mailed to 2"
    assert report.emailed_at == FIRST_OF_DEC
    assert report.emailed_to == ["boss@example.org", "ops@example.org"]
    assert sorted(report_rows().values_list("idempotency_key", flat=True)) == [
        "kpis-monthly-report:2026-11:boss@example.org",
        "kpis-monthly-report:2026-11:ops@example.org",
    ]
    sent = deliver()
    assert sorted(message.to[0] for message in sent) == ["boss@example.org", "ops@example.org"]
    message = sent[0]
    assert message.subject == "Vigil incident report: November 2026"
    assert "The full report with its tables and charts is attached" in message.body
    [(html, html_type)] = message.alternatives
    assert html_type == "text/html" and "<table" in html and "November 2026" in html
    [(filename, content, content_type)] = message.attachments
    assert (filename, content_type) == ("vigil-report-2026-11.pdf", "application/pdf")
    assert "November 2026" in PdfReader(io.BytesIO(content)).pages[0].extract_text()

    # Again the same day, and on the 2nd: nothing new.
    with time_machine.travel(FIRST_OF_DEC + timedelta(minutes=5), tick=False):
        assert monthly_report_task() == "2026-11: already e-mailed"
    with time_machine.travel(FIRST_OF_DEC + timedelta(days=1), tick=False):
        monthly_report_task()
    assert report_rows().count() == 2
    assert deliver() == []
    assert MonthlyReport.objects.get().version == 1


def test_regenerating_bumps_the_version_and_mails_nothing(november, quick_pdf):
    recipients("boss@example.org")
    with time_machine.travel(FIRST_OF_DEC, tick=False):
        monthly_report_task()
    deliver()

    report = generate()
    with time_machine.travel(FIRST_OF_DEC + timedelta(hours=1), tick=False):
        again = monthly_report_email(report=report)

    assert report.version == 2 and report.data["version"] == 2
    assert again.sent == [] and again.already == ["boss@example.org"]
    assert report_rows().count() == 1
    report.refresh_from_db()
    assert report.emailed_at == FIRST_OF_DEC
    assert deliver() == []


def test_an_address_added_later_is_sent_to_alone(november, quick_pdf):
    recipients("boss@example.org")
    with time_machine.travel(FIRST_OF_DEC, tick=False):
        monthly_report_task()
    recipients("boss@example.org\ncfo@example.org")

    with time_machine.travel(FIRST_OF_DEC + timedelta(days=1), tick=False):
        assert monthly_report_task() == "2026-11: already e-mailed"
        outcome = monthly_report_email(report=MonthlyReport.objects.get())

    assert outcome.sent == ["cfo@example.org"]
    report = MonthlyReport.objects.get()
    assert report.emailed_to == ["boss@example.org", "cfo@example.org"]
    assert report.emailed_at == FIRST_OF_DEC
    assert sorted(m.to[0] for m in deliver()) == ["boss@example.org", "cfo@example.org"]


def test_without_recipients_the_report_is_generated_and_not_mailed(november):
    recipients("")

    with time_machine.travel(FIRST_OF_DEC, tick=False):
        outcome = monthly_report_task()

    assert outcome == "2026-11: generated (version 1), not e-mailed: no recipients"
    report = MonthlyReport.objects.get()
    assert report.generated_at == FIRST_OF_DEC
    assert (report.emailed_at, report.emailed_to) == (None, [])
    assert not report_rows().exists()


def test_a_policy_zone_behind_beats_gets_its_report_on_the_second(quick_pdf):
    KpiPolicy.objects.filter(pk=1).update(
        time_zone="America/Los_Angeles", report_recipients="boss@example.org"
    )
    # 06:00 UTC on the 1st is still 30 November in California: October is the last month ended.
    with time_machine.travel(FIRST_OF_DEC, tick=False):
        monthly_report_task()
    with time_machine.travel(FIRST_OF_DEC + timedelta(days=1), tick=False):
        monthly_report_task()

    assert list(MonthlyReport.objects.order_by("month").values_list("month", flat=True)) == [
        date(2026, 10, 1),
        date(2026, 11, 1),
    ]
    november = MonthlyReport.objects.get(month=date(2026, 11, 1))
    assert november.data["period"]["start"] == "2026-11-01T00:00:00-07:00"


def test_without_a_pdf_the_report_still_goes_out_and_says_so(november, monkeypatch):
    from kpis.services.reports import PdfUnavailable

    def unavailable(*, report):
        raise PdfUnavailable("WeasyPrint cannot be loaded")

    monkeypatch.setattr("kpis.services.reports.generate.monthly_report_pdf", unavailable)
    recipients("boss@example.org")
    with time_machine.travel(FIRST_OF_DEC, tick=False):
        monthly_report_task()

    [message] = deliver()
    assert message.attachments == []
    assert "The PDF could not be made on this server" in message.body
