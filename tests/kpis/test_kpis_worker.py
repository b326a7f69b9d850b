"""The KPI tasks through real processes: a Celery worker and beat on Redis, the test database on
PostgreSQL, a local SMTP server as the mail provider. A reopened old incident's month is marked
stale by the worker's event handler and recomputed by the beat's rollup sweep; the monthly
report task, sent twice, e-mails each recipient once, with the PDF attached."""

from __future__ import annotations

import email
import time
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from django.db import transaction
from django.utils import timezone

from incidents.models import Source
from incidents.services import incident_transition
from kpis.models import KpiMonth, KpiPolicy, KpiRollup, MonthlyReport
from kpis.services.periods import months_back
from kpis.services.rollups import kpi_month_recompute, month_of
from kpis.tasks import monthly_report_task
from tests import workers
from tests.communications.test_fanout_worker import SmtpSink, worker_env
from tests.workers import wait_for

from .history import incident_at

celery_worker = workers.celery_worker
no_external_network = workers.no_external_network

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("no_external_network"),
]


class ReportSink(SmtpSink):
    """Also keeps each message whole, to read its attachment."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            for address in envelope.rcpt_tos:
                self.messages.append((address, parsed))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def report_sink():
    import asyncio

    sink = ReportSink()
    sink.controller.start()
    yield sink
    sink.controller.stop()
    asyncio.set_event_loop(asyncio.new_event_loop())


def test_a_late_reopen_is_recomputed_by_the_worker_and_beat(celery_worker, report_sink):
    old = months_back(month_of(timezone.now()), 3)
    detected = datetime(old.year, old.month, 10, 9, 0, tzinfo=UTC)
    incident = incident_at(detected, resolve_after=timedelta(hours=1))
    kpi_month_recompute(month=old)
    fcr = KpiRollup.objects.get(
        month__month=old, definition__slug="first-contact-resolution", severity=None, service=None
    )
    assert fcr.sample == 1

    env = worker_env(report_sink, VIGIL_KPI_ROLLUP_SWEEP_SECONDS="1")
    celery_worker.worker(env, concurrency=1)
    celery_worker.beat(env)
    with transaction.atomic():
        incident_transition(incident=incident, action="reopen", actor=None, source=Source.SYSTEM)

    def recomputed() -> bool:
        month = KpiMonth.objects.get(month=old)
        rollup = KpiRollup.objects.filter(
            month=month, definition__slug="first-contact-resolution", severity=None, service=None
        ).first()
        return not month.stale and rollup is not None and rollup.sample == 0

    wait_for(recomputed, timeout=90, what="the reopened incident's month recomputed")


def test_the_monthly_report_task_mails_each_recipient_once_with_the_pdf(celery_worker, report_sink):
    KpiPolicy.objects.filter(pk=1).update(
        report_recipients="cto@example.org\nit-manager@example.org"
    )
    last = months_back(month_of(timezone.now()), 1)
    incident_at(datetime(last.year, last.month, 12, 9, 0, tzinfo=UTC), severity=1)
    celery_worker.worker(worker_env(report_sink), concurrency=2)

    with transaction.atomic():
        transaction.on_commit(monthly_report_task.delay)
        transaction.on_commit(monthly_report_task.delay)

    recipients = {"cto@example.org", "it-manager@example.org"}

    def reports() -> list:
        # The incident's own pages to staff arrive here too.
        return [(a, m) for a, m in report_sink.messages if a in recipients]

    def mailed() -> bool:
        return {address for address, _ in reports()} == recipients

    wait_for(mailed, timeout=180, what="the monthly report at both recipients")
    time.sleep(3)  # the second task may not send anything more
    assert len(reports()) == 2
    report = MonthlyReport.objects.get(month=last)
    assert report.emailed_at is not None and report.version >= 1
    for _, message in reports():
        assert f"{last:%Y-%m}" in message["Subject"] or f"{last:%B %Y}" in message["Subject"]
        pdfs = [
            part
            for part in message.iter_attachments()
            if part.get_content_type() == "application/pdf"
        ]
        assert len(pdfs) == 1
        assert pdfs[0].get_content().startswith(b"%PDF")
