"""The monthly reports in the admin: the list, the read-only report page with its charts, the
downloads (Markdown, PDF, CSV of each table, formula-guarded) and the POST actions (regenerate,
generate a past month, send to the recipients not sent to yet) behind their permission."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from kpis.models import KpiPolicy, MonthlyReport
from kpis.services.reports import monthly_report_generate
from tests.factories import ServiceFactory

from .history import incident_at
from .test_monthly_report import quick_pdf, report_rows

__all__ = ["quick_pdf"]

pytestmark = pytest.mark.django_db

NOV = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def report() -> MonthlyReport:
    service = ServiceFactory(slug="crm", name='=HYPERLINK("http://x")')
    hostile = ServiceFactory(slug="web", name="<img src=x onerror=alert(1)>")
    incident_at(NOV, severity=2, services=[service, hostile])
    incident_at(NOV + timedelta(days=2), severity=3, ack_after=timedelta(minutes=40))
    return monthly_report_generate(month=date(2026, 11, 1))


def url(name: str, *args) -> str:
    return reverse(f"admin:kpis_monthlyreport_{name}", args=args)


def test_the_list_shows_month_version_and_mailing(client, viewer, report):
    client.force_login(viewer)

    response = client.get(url("changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "November 2026" in page and url("change", report.pk) in page
    assert "Generate report for month" not in page  # no permission to generate


def test_the_report_page_renders_the_markdown_safely_with_the_charts(client, viewer, report):
    client.force_login(viewer)

    response = client.get(url("change", report.pk))

    assert response.status_code == 200
    page = response.content.decode()
    assert "<table>" in page and "<svg" in page
    assert "Incidents per month by severity" in page
    assert "<img" not in page  # a service's name is text in the table and the chart
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Not e-mailed: the KPI policy lists no report recipient" in page
    assert "Regenerate" not in page and "Send to recipients" not in page
    assert url("csv", report.pk) + "?table=volume_service" in page


def test_downloads(client, viewer, report):
    client.force_login(viewer)

    markdown = client.get(url("markdown", report.pk))
    assert markdown["Content-Type"] == "text/markdown; charset=utf-8"
    assert 'filename="vigil-report-2026-11.md"' in markdown["Content-Disposition"]
    assert markdown.content.decode() == report.markdown

    pdf = client.get(url("pdf", report.pk))
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_csv_rows_are_raw_and_guarded_against_formulas(client, viewer, report):
    client.force_login(viewer)

    response = client.get(url("csv", report.pk), {"table": "volume_service"})

    assert response.status_code == 200
    assert 'filename="vigil-report-2026-11-volume_service.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["slug", "name", "count"]
    assert ["crm", '\'=HYPERLINK("http://x")', "1"] in rows

    kpis = list(
        csv.DictReader(
            io.StringIO(client.get(url("csv", report.pk), {"table": "kpis"}).content.decode())
        )
    )
    respond = next(row for row in kpis if row["slug"] == "time-to-respond")
    assert (respond["value"], respond["sample"], respond["met"]) == ("25.0", "2", "no")

    for table in ("trend", "volume_severity", "volume_source", "breaches", "causes", "actions"):
        assert client.get(url("csv", report.pk), {"table": table}).status_code == 200
    bad = client.get(url("csv", report.pk), {"table": "secrets"})
    assert bad.status_code == 400 and b"Unknown table" in bad.content


def test_regenerate_needs_the_permission_and_a_post(client, viewer, incident_manager, report):
    client.force_login(viewer)
    assert client.post(url("regenerate", report.pk)).status_code == 403
    assert client.post(url("send", report.pk)).status_code == 403
    assert client.post(url("generate"), {"month": "2026-10"}).status_code == 403
    assert MonthlyReport.objects.get().version == 1

    client.force_login(incident_manager)
    assert client.get(url("regenerate", report.pk)).status_code == 405
    response = client.post(url("regenerate", report.pk), follow=True)

    assert response.status_code == 200
    assert "regenerated (version 2)" in response.content.decode()
    report.refresh_from_db()
    assert (report.version, report.generated_by) == (2, incident_manager)
    assert not report_rows().exists()


def test_regenerate_is_csrf_protected(incident_manager, report):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(incident_manager)

    assert client.post(url("regenerate", report.pk)).status_code == 403
    assert MonthlyReport.objects.get().version == 1


def test_generate_a_past_month_and_refuse_bad_months(client, incident_manager, report):
    client.force_login(incident_manager)

    response = client.post(url("generate"), {"month": "2026-10"})

    october = MonthlyReport.objects.get(month=date(2026, 10, 1))
    assert response.status_code == 302 and response["Location"] == url("change", october.pk)
    assert october.version == 1 and october.data["month"] == "2026-10"
    for bad in ("2026-13", "November", "2026-12", "2027-01", ""):
        refused = client.post(url("generate"), {"month": bad})
        assert refused.status_code == 400, bad
    assert MonthlyReport.objects.count() == 2
    assert (
        "has not ended yet" in client.post(url("generate"), {"month": "2026-12"}).content.decode()
    )


def test_send_to_recipients_not_yet_sent(client, incident_manager, report, quick_pdf):
    KpiPolicy.objects.filter(pk=1).update(report_recipients="boss@example.org")
    client.force_login(incident_manager)

    first = client.post(url("send", report.pk), follow=True)
    assert "Sent to boss@example.org." in first.content.decode()
    KpiPolicy.objects.filter(pk=1).update(report_recipients="boss@example.org\ncfo@example.org")
    page = client.get(url("change", report.pk)).content.decode()
    assert "Send to recipients not yet sent (1)" in page
    second = client.post(url("send", report.pk), follow=True)
    third = client.post(url("send", report.pk), follow=True)

    assert "Sent to cfo@example.org." in second.content.decode()
    assert "Every recipient has been sent this report already." in third.content.decode()
    assert sorted(report_rows().values_list("recipient", flat=True)) == [
        "boss@example.org",
        "cfo@example.org",
    ]
    report.refresh_from_db()
    assert report.emailed_to == ["boss@example.org", "cfo@example.org"]
