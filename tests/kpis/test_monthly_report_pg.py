"""The monthly report under concurrent beats, on PostgreSQL: two runs at the same moment take
turns on the report row's lock; the report is generated once and each address gets one
message."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from escalation.models import Notification
from kpis.models import KpiPolicy, MonthlyReport
from kpis.services.reports import monthly_report_run
from tests.communications.test_maintenance_pg import in_threads

from .history import incident_at
from .test_monthly_report import quick_pdf

__all__ = ["quick_pdf"]

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

FIRST_OF_DEC = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def test_two_beats_at_once_mail_the_report_once(quick_pdf):
    incident_at(datetime(2026, 11, 3, 9, 0, tzinfo=UTC), severity=2)
    KpiPolicy.objects.filter(pk=1).update(report_recipients="boss@example.org\nops@example.org")

    runs = in_threads(
        lambda: monthly_report_run(now=FIRST_OF_DEC),
        lambda: monthly_report_run(now=FIRST_OF_DEC),
    )

    assert sorted(run.generated for run in runs) == [False, True]
    report = MonthlyReport.objects.get()
    assert (report.month, report.version) == (date(2026, 11, 1), 1)
    assert report.emailed_to == ["boss@example.org", "ops@example.org"]
    assert sorted(
        Notification.objects.filter(idempotency_key__startswith="kpis-monthly-report:").values_list(
            "recipient", flat=True
        )
    ) == ["boss@example.org", "ops@example.org"]
