"""Stored monthly rollups: what a month stores, the 12-month trend read from them, and a late
change to an old incident marking its month stale for the sweep."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from incidents.models import Source
from incidents.services import incident_transition, incident_update
from kpis.models import KpiMonth, KpiRollup
from kpis.selectors import kpi_results, period_parse
from kpis.services.rollups import (
    kpi_month_recompute,
    kpi_months_refresh,
    kpi_months_stale_recompute,
    kpi_trend,
)
from kpis.tasks import rollup_refresh_task, rollup_sweep_task
from tests.events import follow_events
from tests.factories import ServiceFactory

from .history import incident_at

pytestmark = pytest.mark.django_db

SEP = datetime(2026, 9, 8, 9, 0, tzinfo=UTC)
OCT = datetime(2026, 10, 6, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def rollup(month, slug, severity=None, service=None):
    return KpiRollup.objects.get(
        month__month=month, definition__slug=slug, severity=severity, service=service
    )


def test_a_month_stores_the_same_figures_as_computed_live():
    checkout = ServiceFactory(slug="checkout")
    incident_at(OCT, severity=1, services=[checkout], resolve_after=timedelta(hours=3))
    incident_at(OCT, severity=2, impact_before=timedelta(minutes=9))
    incident_at(OCT, severity=2, impact_before=None, escalated=True)

    kpi_month_recompute(month=date(2026, 10, 1))

    live = {r.definition.slug: r for r in kpi_results(period=period_parse("2026-10"))}
    stored = rollup(date(2026, 10, 1), "mttd")
    assert (stored.sample, stored.unmeasurable) == (live["mttd"].sample, 1)
    assert stored.mean == pytest.approx(live["mttd"].mean)
    assert stored.median == pytest.approx(live["mttd"].median)
    assert rollup(date(2026, 10, 1), "mttd", severity=2).mean == pytest.approx(9)
    assert rollup(date(2026, 10, 1), "mttd", service=checkout).sample == 1
    assert rollup(date(2026, 10, 1), "mttd", severity=1, service=checkout).sample == 1
    # The Sev 1 KPI stores no Sev 2 rows.
    assert not KpiRollup.objects.filter(definition__slug="time-to-resolve-sev1", severity=2)
    month = KpiMonth.objects.get(month=date(2026, 10, 1))
    assert month.stale is False
    assert month.summary["total"] == 3
    assert month.summary["volume_by_severity"] == {"1": 1, "2": 2}
    assert month.summary["volume_by_service"] == [["checkout", "Checkout", 1]]


def test_recomputing_replaces_rather_than_adds():
    incident_at(OCT)
    kpi_month_recompute(month=date(2026, 10, 1))
    count = KpiRollup.objects.count()
    kpi_month_recompute(month=date(2026, 10, 1))
    assert KpiRollup.objects.count() == count


def test_trend_reads_twelve_months_oldest_first_in_one_query(django_assert_num_queries):
    incident_at(SEP, impact_before=timedelta(minutes=8))
    incident_at(OCT, impact_before=timedelta(minutes=2))
    with time_machine.travel(NOW, tick=False):
        kpi_months_refresh()

    with django_assert_num_queries(2):  # the definitions, then the rollups
        trend = kpi_trend(end_month=date(2026, 12, 1))
    assert [month for month, _ in trend][:1] == [date(2026, 1, 1)]
    assert len(trend) == 12
    by_month = dict(trend)
    assert by_month[date(2026, 9, 1)]["mttd"].mean == pytest.approx(8)
    assert by_month[date(2026, 10, 1)]["mttd"].mean == pytest.approx(2)
    assert by_month[date(2026, 11, 1)]["mttd"] is None  # stored, but nothing to count
    assert by_month[date(2026, 1, 1)]["mttd"] is None  # stored, before the first incident


def test_a_late_reopen_of_an_old_incident_recomputes_its_month():
    incident = incident_at(SEP, resolve_after=timedelta(hours=1))
    with time_machine.travel(NOW, tick=False):
        kpi_months_refresh()
    assert rollup(date(2026, 9, 1), "first-contact-resolution").mean == 100

    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        incident_transition(incident=incident, action="reopen", actor=None, source=Source.SYSTEM)
        follow_events()
    assert KpiMonth.objects.get(month=date(2026, 9, 1)).stale is True
    assert KpiMonth.objects.get(month=date(2026, 10, 1)).stale is False

    assert rollup_sweep_task() == 1
    # Reopened and not resolved again: no longer a first-contact resolution, not measurable.
    fcr = rollup(date(2026, 9, 1), "first-contact-resolution")
    assert (fcr.sample, fcr.unmeasurable) == (0, 1)
    assert kpi_months_stale_recompute() == 0


def test_a_corrected_detection_time_moves_an_incident_between_months():
    incident = incident_at(OCT, impact_before=None, resolve_after=None)
    with time_machine.travel(NOW, tick=False):
        kpi_months_refresh()
        incident_update(
            incident=incident,
            actor=None,
            source=Source.SYSTEM,
            detected_at=SEP,
            correction_reason="Detection was in September; logged late.",
        )
        follow_events()
    stale = set(KpiMonth.objects.filter(stale=True).values_list("month", flat=True))
    assert stale == {date(2026, 9, 1), date(2026, 10, 1)}
    rollup_sweep_task()
    assert KpiMonth.objects.get(month=date(2026, 9, 1)).summary["total"] == 1
    assert KpiMonth.objects.get(month=date(2026, 10, 1)).summary["total"] == 0


def test_the_nightly_refresh_fills_missing_months_once():
    incident_at(SEP)
    with time_machine.travel(NOW, tick=False):
        assert rollup_refresh_task() == 12  # the last 12 months, with or without incidents
        # Later nights: the current and previous month only.
        assert rollup_refresh_task() == 2
