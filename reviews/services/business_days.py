"""Business days for review deadlines (§8.1: a review within 5 business days of closure).

A business day is a weekday that is neither a public holiday of ``VIGIL_HOLIDAYS_COUNTRY``
(and ``VIGIL_HOLIDAYS_SUBDIVISION``, e.g. a US state or a German Land) as the ``holidays``
package knows them, nor a company closure (:class:`reviews.models.ClosureDay`). Days are
counted in the review policy's time zone: an incident closed at 23:30 on a Friday in New York is
closed on Friday there, whatever UTC says.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..models import ClosureDay, ReviewPolicy

__all__ = [
    "business_day_add",
    "business_day_end",
    "business_days_between",
    "holiday_calendar",
    "is_business_day",
    "policy_zone",
    "review_due_date",
    "review_policy_get",
]

DEFAULT_COUNTRY = "US"


def review_policy_get() -> ReviewPolicy:
    """The review policy (its one row; created with the defaults if a database lost it)."""
    policy, _ = ReviewPolicy.objects.get_or_create(pk=1)
    return policy


def policy_zone(policy: ReviewPolicy) -> ZoneInfo:
    try:
        return ZoneInfo(policy.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"The review policy's time zone {policy.time_zone!r} is not a known time zone."
        ) from exc


def holiday_calendar() -> tuple[str, str]:
    """The configured (country, subdivision) of public holidays."""
    country = (getattr(settings, "VIGIL_HOLIDAYS_COUNTRY", DEFAULT_COUNTRY) or "").strip()
    subdivision = (getattr(settings, "VIGIL_HOLIDAYS_SUBDIVISION", "") or "").strip()
    return country.upper(), subdivision


@functools.lru_cache(maxsize=64)
def _public_holidays(country: str, subdivision: str, year: int) -> frozenset[date]:
    if not country:
        return frozenset()
    try:
        calendar = holidays.country_holidays(country, subdiv=subdivision or None, years=year)
    except NotImplementedError as exc:
        raise ImproperlyConfigured(
            f"VIGIL_HOLIDAYS_COUNTRY={country!r} / VIGIL_HOLIDAYS_SUBDIVISION={subdivision!r} "
            f"is not a calendar the holidays package knows: {exc}"
        ) from exc
    return frozenset(calendar.keys())


def _closures(start: date, end: date) -> set[date]:
    return set(
        ClosureDay.objects.filter(date__gte=start, date__lte=end).values_list("date", flat=True)
    )


def _is_business_day(day: date, closures: set[date]) -> bool:
    if day.weekday() >= 5 or day in closures:
        return False
    country, subdivision = holiday_calendar()
    return day not in _public_holidays(country, subdivision, day.year)


def is_business_day(day: date) -> bool:
    """Whether ``day`` is a business day (weekday, no public holiday, no company closure)."""
    return _is_business_day(day, _closures(day, day))


def business_day_add(start: date, count: int) -> date:
    """The ``count``-th business day after ``start`` (``start`` itself never counts; 0 gives
    ``start``)."""
    if count <= 0:
        return start
    # One query for the closures of the window: a business day is found well within
    # three weeks per five, however many holidays a country has.
    window_end = start + timedelta(days=count * 3 + 31)
    closures = _closures(start, window_end)
    day, found = start, 0
    while found < count:
        day += timedelta(days=1)
        if day > window_end:
            window_end = day + timedelta(days=31)
            closures |= _closures(day, window_end)
        if _is_business_day(day, closures):
            found += 1
    return day


def business_days_between(start: date, end: date) -> list[date]:
    """The business days from ``start`` to ``end``, both included."""
    closures = _closures(start, end)
    days, day = [], start
    while day <= end:
        if _is_business_day(day, closures):
            days.append(day)
        day += timedelta(days=1)
    return days


def review_due_date(*, closed_at: datetime, policy: ReviewPolicy | None = None) -> date:
    """The day a review of an incident closed at ``closed_at`` is due: the policy's
    ``business_days``-th business day after the closure's date in the policy's time zone."""
    policy = policy or review_policy_get()
    closed_on = closed_at.astimezone(policy_zone(policy)).date()
    return business_day_add(closed_on, policy.business_days)


def business_day_end(day: date, policy: ReviewPolicy | None = None) -> datetime:
    """The end of ``day`` in the policy's time zone (the next midnight there), as an aware
    datetime: a review is overdue once this passes without it having been held."""
    policy = policy or review_policy_get()
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=policy_zone(policy))
