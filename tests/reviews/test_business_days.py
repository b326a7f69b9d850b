"""The review's due date: the policy's business day after closure, skipping weekends, the
configured country's public holidays and the company's closure days, counted in the policy's
time zone. Checked through the due date a closure books."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine

from incidents.models import Source
from incidents.services import incident_transition, incident_update
from reviews.models import ClosureDay, Review, ReviewPolicy
from reviews.services.business_days import business_day_add, is_business_day, review_due_date
from tests.events import follow_events
from tests.factories import IncidentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def us_holidays(settings):
    settings.VIGIL_HOLIDAYS_COUNTRY = "US"
    settings.VIGIL_HOLIDAYS_SUBDIVISION = ""


def close_at(when: datetime, severity: int = 1) -> Review:
    """An incident of ``severity`` closed at ``when`` (frozen clock); its booked review."""
    with time_machine.travel(when, tick=False):
        incident = IncidentFactory(status="resolved", severity=severity)
        incident = incident_update(
            incident=incident,
            actor=None,
            source=Source.SYSTEM,
            root_cause="A bad release.",
            business_impact="Checkout down.",
        )
        incident_transition(incident=incident, action="close", actor=None, source=Source.SYSTEM)
        follow_events()
    return Review.objects.get(incident=incident)


def test_friday_closure_before_a_holiday_monday_skips_the_weekend_and_the_holiday():
    # Fri 23 May 2025; Mon 26 May is Memorial Day.
    review = close_at(datetime(2025, 5, 23, 15, 0, tzinfo=UTC))

    # Tue 27, Wed 28, Thu 29, Fri 30, Mon 2 June.
    assert review.due_date == date(2025, 6, 2)


def test_across_the_year_end_new_years_day_is_skipped():
    review = close_at(datetime(2025, 12, 30, 10, 0, tzinfo=UTC))

    # Wed 31 Dec, (Thu 1 Jan holiday), Fri 2, Mon 5, Tue 6, Wed 7 Jan.
    assert review.due_date == date(2026, 1, 7)


def test_a_late_evening_closure_counts_from_the_policy_zone_date():
    ReviewPolicy.objects.filter(pk=1).update(time_zone="America/New_York")
    # 03:30 UTC on Friday is 23:30 on Thursday 5 June in New York.
    review = close_at(datetime(2025, 6, 6, 3, 30, tzinfo=UTC))

    assert review.due_date == date(2025, 6, 12)  # Fri 6, Mon 9 ... Thu 12


def test_the_same_moment_in_a_utc_policy_counts_from_friday():
    review = close_at(datetime(2025, 6, 6, 3, 30, tzinfo=UTC))

    assert review.due_date == date(2025, 6, 13)


def test_company_closure_days_are_not_business_days():
    ClosureDay.objects.create(date=date(2025, 6, 10), name="Company offsite")

    review = close_at(datetime(2025, 6, 5, 12, 0, tzinfo=UTC))

    # Fri 6, Mon 9, (Tue 10 closed), Wed 11, Thu 12, Fri 13.
    assert review.due_date == date(2025, 6, 13)
    assert not is_business_day(date(2025, 6, 10))


def test_the_policy_business_day_limit_is_used():
    ReviewPolicy.objects.filter(pk=1).update(business_days=1)

    review = close_at(datetime(2025, 5, 23, 15, 0, tzinfo=UTC))

    assert review.due_date == date(2025, 5, 27)


def test_the_subdivision_holidays_are_skipped(settings):
    settings.VIGIL_HOLIDAYS_COUNTRY = "DE"
    settings.VIGIL_HOLIDAYS_SUBDIVISION = "BY"
    closed = datetime(2025, 1, 3, 12, 0, tzinfo=UTC)  # Friday

    # Mon 6 January (Epiphany) is a holiday in Bavaria, not in Berlin.
    assert review_due_date(closed_at=closed) == date(2025, 1, 13)
    settings.VIGIL_HOLIDAYS_SUBDIVISION = "BE"
    assert review_due_date(closed_at=closed) == date(2025, 1, 10)


def test_no_country_counts_weekends_and_closures_only(settings):
    settings.VIGIL_HOLIDAYS_COUNTRY = ""

    assert business_day_add(date(2025, 12, 31), 1) == date(2026, 1, 1)


def test_weekend_closure_counts_from_the_next_business_day():
    review = close_at(datetime(2025, 6, 7, 12, 0, tzinfo=UTC))  # Saturday

    assert review.due_date == date(2025, 6, 13)  # Mon 9 ... Fri 13
