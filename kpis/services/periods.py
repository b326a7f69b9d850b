"""Periods a KPI is taken over: a calendar month, a quarter, a year or a range of days, in the KPI
policy's time zone (where a month starts and ends)."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from incidents.memo import Versioned

from ..models import KpiPolicy

__all__ = [
    "Period",
    "month_start",
    "months_back",
    "next_month",
    "period_month",
    "period_parse",
    "policy_zone",
]


@dataclass(frozen=True)
class Period:
    """[start, end) in aware datetimes, and how it is written (``2026-11``, ``2026-Q4``...)."""

    start: datetime
    end: datetime
    label: str

    @property
    def first_day(self) -> date:
        return self.start.astimezone(self.start.tzinfo).date()

    @property
    def is_month(self) -> bool:
        return bool(re.fullmatch(r"\d{4}-\d{2}", self.label))


# The KPI policy's time zone, read for every incident event the rollups follow: kept per
# process while the policy is unchanged (:mod:`incidents.memo`).
KPI_POLICY = Versioned("kpis:policy", models=(KpiPolicy,))


def _policy_time_zone_name() -> str | None:
    return KpiPolicy.objects.filter(pk=1).values_list("time_zone", flat=True).first()


def policy_zone() -> tzinfo:
    name = KPI_POLICY.get("time_zone", _policy_time_zone_name) or "UTC"
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def months_back(month: date, count: int) -> date:
    """The first day of the month ``count`` months before ``month``."""
    index = month.year * 12 + month.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _days(first: date, last_exclusive: date, label: str, zone: tzinfo | None) -> Period:
    zone = zone or policy_zone()
    return Period(_midnight(first, zone), _midnight(last_exclusive, zone), label)


def period_month(month: date, *, zone: tzinfo | None = None) -> Period:
    """The calendar month holding ``month``."""
    first = month_start(month)
    return _days(first, next_month(first), f"{first:%Y-%m}", zone)


def period_parse(text: str, *, zone: tzinfo | None = None) -> Period:
    """``2026-11`` (a month), ``2026-Q4`` (a quarter), ``2026`` (a year) or
    ``2026-11-03..2026-11-20`` (days, both included). Raises ValueError with the accepted forms."""
    text = (text or "").strip()
    try:
        if match := re.fullmatch(r"(\d{4})-(\d{2})", text):
            return period_month(date(int(match[1]), int(match[2]), 1), zone=zone)
        if match := re.fullmatch(r"(\d{4})-[Qq]([1-4])", text):
            first = date(int(match[1]), (int(match[2]) - 1) * 3 + 1, 1)
            end = next_month(next_month(next_month(first)))
            return _days(first, end, f"{match[1]}-Q{match[2]}", zone)
        if match := re.fullmatch(r"(\d{4})", text):
            year = int(match[1])
            return _days(date(year, 1, 1), date(year + 1, 1, 1), text, zone)
        if match := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", text):
            first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2])
            if last < first:
                raise ValueError("the range ends before it starts")
            if (last - first).days > 3660:
                raise ValueError("a range is limited to ten years")
            return _days(first, last + timedelta(days=1), text, zone)
    except ValueError as exc:
        if "range" in str(exc):
            raise ValueError(f"Period {text!r}: {exc}.") from None
    raise ValueError(
        f"Period {text!r} is not one of: YYYY-MM (a month), YYYY-Qn (a quarter), YYYY (a year), "
        "YYYY-MM-DD..YYYY-MM-DD (days, both included)."
    )
