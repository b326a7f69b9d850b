"""Uptime arithmetic on hand-made status intervals (the Statuspage convention: major outage in
full, partial outage at 30 %, degraded performance and maintenance up; days in the page's time
zone; days before the start date without data)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from communications.models import Component, ComponentStatusInterval
from communications.public.uptime import uptime_compute
from tests.factories import ServiceFactory

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0, tz: ZoneInfo = UTC) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=tz)


def component_with(*intervals, start_date=date(2026, 1, 1), slug="api") -> Component:
    """A component whose history is ``intervals``: (status, started_at, ended_at or None)."""
    component = Component.objects.create(
        service=ServiceFactory(slug=slug),
        status=intervals[-1][0] if intervals else "operational",
        status_changed_at=intervals[0][1] if intervals else NOW,
        start_date=start_date,
    )
    for status, started_at, ended_at in intervals:
        ComponentStatusInterval.objects.create(
            component=component, status=status, started_at=started_at, ended_at=ended_at
        )
    return component


def uptime_of(component: Component, now: datetime = NOW, tz: ZoneInfo = UTC):
    return uptime_compute(components=[(component.code, component.start_date)], now=now, tz=tz)[
        component.code
    ]


def day_of(uptime, day: date):
    return next(d for d in uptime.days if d.date == day)


@pytest.mark.django_db
def test_a_day_half_in_major_outage_is_50_percent():
    component = component_with(
        ("operational", at(1), at(10)),
        ("major_outage", at(10), at(10, 12)),
        ("operational", at(10, 12), None),
    )
    day = day_of(uptime_of(component), date(2026, 11, 10))
    assert day.percent == pytest.approx(50.0)
    assert day.level == "major"


@pytest.mark.django_db
def test_a_day_with_ten_hours_of_partial_outage_is_87_5_percent():
    component = component_with(
        ("operational", at(1), at(10, 8)),
        ("partial_outage", at(10, 8), at(10, 18)),
        ("operational", at(10, 18), None),
    )
    day = day_of(uptime_of(component), date(2026, 11, 10))
    assert day.percent == pytest.approx(87.5)
    assert day.level == "partial"


@pytest.mark.django_db
def test_degraded_performance_and_maintenance_count_as_up():
    component = component_with(
        ("degraded_performance", at(10), at(11)),
        ("under_maintenance", at(11), at(12)),
        ("operational", at(12), None),
    )
    uptime = uptime_of(component)
    assert {d.percent for d in uptime.days} == {100.0}
    assert {d.level for d in uptime.days} == {"up"}
    assert uptime.percent == 100.0


@pytest.mark.django_db
def test_an_interval_across_midnight_counts_on_both_days():
    component = component_with(
        ("major_outage", at(9, 22), at(10, 2)),
        ("operational", at(10, 2), None),
    )
    uptime = uptime_of(component)
    assert day_of(uptime, date(2026, 11, 9)).major_seconds == 2 * 3600
    assert day_of(uptime, date(2026, 11, 10)).major_seconds == 2 * 3600
    assert day_of(uptime, date(2026, 11, 9)).percent == pytest.approx(100 * 22 / 24)


@pytest.mark.django_db
def test_an_open_interval_counts_up_to_now_and_today_counts_up_to_now():
    component = component_with(
        ("operational", at(1), at(20, 6)),
        ("major_outage", at(20, 6), None),
    )
    today = day_of(uptime_of(component), date(2026, 11, 20))
    assert today.length == 12 * 3600
    assert today.major_seconds == 6 * 3600
    assert today.percent == pytest.approx(50.0)


@pytest.mark.django_db
def test_an_outage_older_than_the_window_is_cut_at_its_start():
    component = component_with(
        ("major_outage", NOW - timedelta(days=200), NOW - timedelta(days=88, hours=12)),
        ("operational", NOW - timedelta(days=88, hours=12), None),
    )
    uptime = uptime_of(component)
    assert len(uptime.days) == 90
    assert uptime.days[0].date == date(2026, 8, 23)
    assert uptime.days[0].percent == pytest.approx(0.0)
    assert uptime.days[1].percent == pytest.approx(100.0)


@pytest.mark.django_db
def test_days_before_the_start_date_have_no_data_and_do_not_count():
    component = component_with(
        ("operational", at(19), at(19, 12)),
        ("major_outage", at(19, 12), at(20)),
        ("operational", at(20), at(20, 12)),
        start_date=date(2026, 11, 19),
    )
    uptime = uptime_of(component)
    assert [d.has_data for d in uptime.days].count(True) == 2
    assert uptime.days[0].level == "nodata" and uptime.days[0].percent is None
    # 12 hours down out of 36 counted (yesterday 24, today 12 so far).
    assert uptime.percent == pytest.approx(100 * (1 - 12 / 36))


@pytest.mark.django_db
def test_days_are_the_page_time_zone_days():
    paris = ZoneInfo("Europe/Paris")
    # 23:00-01:00 UTC on the 9th/10th is 00:00-02:00 in Paris on the 10th.
    component = component_with(
        ("major_outage", at(9, 23), at(10, 1)),
        ("operational", at(10, 1), None),
    )
    uptime = uptime_of(component, tz=paris)
    assert day_of(uptime, date(2026, 11, 9)).major_seconds == 0
    assert day_of(uptime, date(2026, 11, 10)).major_seconds == 2 * 3600


@pytest.mark.django_db
def test_one_query_for_all_components(django_assert_num_queries):
    components = [component_with(("major_outage", at(10), None), slug=f"svc-{n}") for n in range(5)]
    with django_assert_num_queries(1):
        result = uptime_compute(
            components=[(c.code, c.start_date) for c in components], now=NOW, tz=UTC
        )
    assert all(result[c.code].days[-1].percent == 0.0 for c in components)
