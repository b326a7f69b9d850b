"""Stored rollups under concurrency, on PostgreSQL: recomputations of one month at the same
moment store one set of rows, and a change that marks a month stale while it is being
recomputed is not lost."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connections, transaction

from kpis.models import KpiMonth, KpiRollup
from kpis.services.rollups import (
    kpi_month_recompute,
    kpi_months_mark_stale,
    kpi_months_stale_recompute,
)
from tests.escalation.test_sweep_pg import in_threads

from .history import incident_at

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

OCT = datetime(2026, 10, 6, 9, 0, tzinfo=UTC)
MONTH = date(2026, 10, 1)


def test_recomputations_at_the_same_moment_store_one_set_of_rows():
    for hour in range(6):
        incident_at(OCT + timedelta(hours=hour), severity=1 + hour % 3)
    kpi_month_recompute(month=MONTH)
    expected = KpiRollup.objects.count()

    in_threads(*[lambda: kpi_month_recompute(month=MONTH)] * 4)
    assert KpiRollup.objects.count() == expected

    kpi_months_mark_stale(months=[MONTH])
    done = in_threads(*[kpi_months_stale_recompute] * 4)
    assert sum(done) == 1  # the others skipped the month one of them held
    assert KpiRollup.objects.count() == expected
    assert KpiMonth.objects.get(month=MONTH).stale is False


def test_a_month_marked_stale_during_its_recomputation_stays_stale():
    incident_at(OCT)
    kpi_month_recompute(month=MONTH)
    locked = threading.Event()
    release = threading.Event()

    def recompute_slowly() -> None:
        # Holds the month's lock, as a recomputation does, while another change marks it.
        try:
            with transaction.atomic():
                row = KpiMonth.objects.select_for_update().get(month=MONTH)
                locked.set()
                release.wait(10)
                row.stale = False
                row.save(update_fields=["stale"])
        finally:
            connections.close_all()

    def mark() -> None:
        try:
            locked.wait(10)
            threading.Timer(0.5, release.set).start()
            kpi_months_mark_stale(months=[MONTH])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=recompute_slowly), threading.Thread(target=mark)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert KpiMonth.objects.get(month=MONTH).stale is True
