"""Uptime of the status page's components, computed from their status intervals.

The Statuspage convention: a day's downtime is its ``major_outage`` time in full plus its
``partial_outage`` time at 30 %; ``degraded_performance`` and ``under_maintenance`` count as
up. Days are calendar days in the page's time zone (a day of a daylight-saving change is 23 or
25 hours long); today counts up to now. Days before a component's ``start_date`` have no data
and do not count in its percentage, which is over the days with data.

One query reads every outage interval of the window for all components; the arithmetic then
walks each interval's days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Q

from ..models import ComponentStatus, ComponentStatusInterval

DAYS = 90
PARTIAL_WEIGHT = 0.3
# A day's colour by its weighted downtime: none, under MINOR_SECONDS, under MAJOR_SECONDS, more.
MINOR_SECONDS = 30 * 60
MAJOR_SECONDS = 4 * 3600

OUTAGES = (ComponentStatus.MAJOR_OUTAGE, ComponentStatus.PARTIAL_OUTAGE)


@dataclass
class Day:
    """One day of one component: seconds in each outage status, of ``length`` seconds counted
    (the whole day, or up to now for today). ``has_data`` False: before the start date."""

    date: date
    length: float
    has_data: bool = True
    major_seconds: float = 0.0
    partial_seconds: float = 0.0

    @property
    def downtime(self) -> float:
        return self.major_seconds + PARTIAL_WEIGHT * self.partial_seconds

    @property
    def percent(self) -> float | None:
        if not self.has_data:
            return None
        if self.length <= 0:
            return 100.0
        return max(0.0, 100.0 * (1 - self.downtime / self.length))

    @property
    def level(self) -> str:
        """``nodata``, ``up``, ``minor``, ``partial`` or ``major`` (the bar's colour)."""
        if not self.has_data:
            return "nodata"
        if self.downtime <= 0:
            return "up"
        if self.downtime < MINOR_SECONDS:
            return "minor"
        if self.downtime < MAJOR_SECONDS:
            return "partial"
        return "major"


@dataclass
class Uptime:
    """A component's days, oldest first, and its percentage over the days with data (``None``
    when no day has data)."""

    days: list[Day]

    @property
    def percent(self) -> float | None:
        counted = [day for day in self.days if day.has_data]
        length = sum(day.length for day in counted)
        if not counted:
            return None
        if length <= 0:
            return 100.0
        return max(0.0, 100.0 * (1 - sum(day.downtime for day in counted) / length))


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The start and end of ``day`` in ``tz`` (local midnights, so 23 or 25 hours on a
    daylight-saving change)."""
    return (
        datetime.combine(day, time(), tzinfo=tz),
        datetime.combine(day + timedelta(days=1), time(), tzinfo=tz),
    )


def uptime_compute(
    *,
    components: list[tuple[str, date]],
    now: datetime,
    tz: ZoneInfo,
    days: int = DAYS,
) -> dict[str, Uptime]:
    """The last ``days`` days (ending today in ``tz``) of each ``(component code, start
    date)``, by code. One query."""
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    window_start = day_bounds(first, tz)[0]
    dates = [first + timedelta(days=n) for n in range(days)]
    lengths = []
    for day in dates:
        start, end = day_bounds(day, tz)
        lengths.append((min(end, now) - start).total_seconds())

    result: dict[str, Uptime] = {}
    for code, start_date in components:
        result[code] = Uptime(
            days=[
                Day(date=day, length=length, has_data=day >= start_date)
                for day, length in zip(dates, lengths, strict=True)
            ]
        )
    if not result:
        return result

    intervals = ComponentStatusInterval.objects.filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=window_start),
        component__service__slug__in=list(result),
        status__in=OUTAGES,
        started_at__lt=now,
    ).values_list("component__service__slug", "status", "started_at", "ended_at")
    for code, status, started_at, ended_at in intervals:
        start = max(started_at, window_start)
        end = min(ended_at or now, now)
        if end <= start:
            continue
        days_of = result[code].days
        index = (start.astimezone(tz).date() - first).days
        while index < days and start < end:
            day_end = day_bounds(dates[index], tz)[1]
            seconds = (min(end, day_end) - start).total_seconds()
            if status == ComponentStatus.MAJOR_OUTAGE:
                days_of[index].major_seconds += seconds
            else:
                days_of[index].partial_seconds += seconds
            start = day_end
            index += 1
    return result
