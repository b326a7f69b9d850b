"""What the KPIs and the monthly report read of reviews (``reviews.selectors``): root causes by
category, the "what went wrong" areas, and action-item completion, each from a hand-built set
with known answers and in one query whatever the number of incidents."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.db.models import F, Value

from incidents.models import Incident
from reviews.models import ActionItem, ActionKind, ActionStatus, Review, ReviewStatus
from reviews.selectors import (
    action_item_completion,
    review_cause_counts,
    review_wrong_area_counts,
)

pytestmark = pytest.mark.django_db

TODAY = date(2026, 3, 16)


@pytest.fixture(autouse=True)
def _today():
    with time_machine.travel("2026-03-16 12:00Z", tick=False):
        yield


@pytest.fixture
def incidents(make_incident):
    return [make_incident(status="resolved") for _ in range(6)]


def _review(incident, status=ReviewStatus.HELD, cause="", **sections):
    return Review.objects.create(
        incident=incident, due_date=TODAY, status=status, cause_category=cause, **sections
    )


def _of(incidents):
    return Incident.objects.filter(pk__in=[i.pk for i in incidents])


def test_cause_counts_most_first_with_the_uncategorised_apart(incidents):
    a, b, c, d, e, f = incidents
    _review(a, cause="software")
    _review(b, status=ReviewStatus.PUBLISHED, cause="software")
    _review(c, cause="unknown")
    _review(d)  # held, not categorised
    _review(e, status=ReviewStatus.BOOKED, cause="capacity")  # not met yet
    _review(f, status=ReviewStatus.CANCELLED, cause="capacity")

    counts = review_cause_counts(incidents=_of(incidents))

    assert counts == [
        ("software", "Software defect", 2),
        ("unknown", "Not determined", 1),
        ("", "Not categorised", 1),
    ]
    assert review_cause_counts(incidents=_of([a, c])) == [
        ("software", "Software defect", 1),
        ("unknown", "Not determined", 1),
    ]
    assert review_cause_counts(incidents=Incident.objects.none()) == []


def test_ties_follow_the_category_order(incidents):
    a, b, c, *_ = incidents
    _review(a, cause="security")
    _review(b, cause="change")
    _review(c)

    assert [row[0] for row in review_cause_counts(incidents=_of(incidents))] == [
        "change",
        "security",
        "",
    ]


def test_wrong_area_counts(incidents):
    a, b, c, d, e, _ = incidents
    _review(a, wrong_detection="The alert fired late.", wrong_process="No runbook.")
    _review(b, status=ReviewStatus.PUBLISHED, wrong_detection="Paged the wrong team.")
    _review(c, wrong_technical="The pool limit was lowered.")
    _review(d)  # nothing went wrong, or nothing written
    _review(e, status=ReviewStatus.BOOKED, wrong_communication="Draft: status page late.")

    assert review_wrong_area_counts(incidents=_of(incidents)) == {
        "detection": 2,
        "communication": 0,
        "technical": 1,
        "process": 1,
    }
    assert review_wrong_area_counts(incidents=Incident.objects.none()) == {
        "detection": 0,
        "communication": 0,
        "technical": 0,
        "process": 0,
    }


def _item(incident, owner, *, due, status=ActionStatus.OPEN, completed=None):
    return ActionItem.objects.create(
        incident=incident,
        kind=ActionKind.LONG_TERM,
        title=f"{status} due {due}",
        owner=owner,
        due_date=due,
        status=status,
        completed_at=completed,
        wont_do_reason="Superseded." if status == ActionStatus.WONT_DO else "",
    )


@pytest.fixture
def items(incidents, incident_manager):
    a, b, *_ = incidents
    owner = incident_manager
    return [
        _item(a, owner, due=date(2026, 3, 10), status=ActionStatus.DONE,
              completed=datetime(2026, 3, 10, 16, 0, tzinfo=UTC)),  # on its due day
        _item(a, owner, due=date(2026, 3, 5), status=ActionStatus.DONE,
              completed=datetime(2026, 3, 9, 9, 0, tzinfo=UTC)),  # late
        _item(a, owner, due=date(2026, 3, 1), status=ActionStatus.WONT_DO),
        _item(a, owner, due=date(2026, 3, 15)),  # overdue
        _item(b, owner, due=date(2026, 3, 12), status=ActionStatus.IN_PROGRESS),  # overdue
        _item(b, owner, due=TODAY),  # due today: not overdue yet
        _item(b, owner, due=date(2026, 4, 2), status=ActionStatus.DONE,
              completed=datetime(2026, 3, 14, 9, 0, tzinfo=UTC)),  # early
    ]  # fmt: skip


def test_action_item_completion_of_incidents(incidents, items):
    a = incidents[0]

    assert action_item_completion(incidents=_of(incidents)) == {
        "total": 7,
        "done": 3,
        "wont_do": 1,
        "open": 3,
        "overdue": 2,
        "done_on_time": 2,
        "completion_rate": 3 / 6,
        "on_time_rate": 2 / 3,
    }
    only_a = action_item_completion(incidents=_of([a]))
    assert (only_a["total"], only_a["done"], only_a["overdue"]) == (4, 2, 1)
    assert only_a["completion_rate"] == 2 / 3 and only_a["on_time_rate"] == 1 / 2


def test_action_item_completion_by_due_date(items):
    march = action_item_completion(due_from=date(2026, 3, 1), due_to=date(2026, 4, 1))
    assert (march["total"], march["done"], march["wont_do"], march["open"]) == (6, 2, 1, 3)
    assert march["completion_rate"] == 2 / 5

    # due_to is exclusive, due_from inclusive; either may be left open
    assert action_item_completion(due_to=date(2026, 3, 5))["total"] == 1
    assert action_item_completion(due_from=date(2026, 3, 16))["total"] == 2
    assert action_item_completion()["total"] == 7


def test_rates_are_none_when_there_is_nothing_to_rate(incidents, incident_manager):
    a, *_ = incidents
    empty = action_item_completion(incidents=Incident.objects.none())
    assert empty["total"] == 0
    assert empty["completion_rate"] is None and empty["on_time_rate"] is None

    _item(a, incident_manager, due=date(2026, 3, 1), status=ActionStatus.WONT_DO)
    decided = action_item_completion(incidents=_of([a]))
    assert decided["total"] == 1 and decided["completion_rate"] is None


def test_each_is_one_query_whatever_the_incidents(incidents, items, django_assert_max_num_queries):
    for incident in incidents[:3]:
        _review(incident, cause="change", wrong_process="Slow hand-over.")
    # The caller's queryset may be annotated and ordered, as the KPI querysets are.
    annotated = (
        Incident.objects.filter(pk__in=[i.pk for i in incidents])
        .annotate(measured=Value(1.0), twice=F("pk") * 2)
        .order_by("-detected_at")
    )

    with django_assert_max_num_queries(1):
        assert review_cause_counts(incidents=annotated) == [("change", "Change or deployment", 3)]
    with django_assert_max_num_queries(1):
        assert review_wrong_area_counts(incidents=annotated)["process"] == 3
    with django_assert_max_num_queries(1):
        assert action_item_completion(incidents=annotated)["total"] == 7
    with django_assert_max_num_queries(1):
        action_item_completion(due_from=date(2026, 3, 1), due_to=date(2026, 4, 1))
