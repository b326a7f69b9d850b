"""What apps above reviews (the KPIs and the monthly report, §9.2) read of them: the common root
causes, the areas where reviews found something went wrong, and how action items are followed
through. Each function is a fixed number of aggregate queries, whatever the number of incidents.

The reviews counted are the **held or published** reviews of the given incidents: a booked
review has not met yet (its sections are a draft) and a cancelled one never will. Which
incidents count (cancelled ones and duplicates excluded, the month they belong to) is the
caller's choice, made in the ``incidents`` queryset it passes.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import Count, F, Q, QuerySet

from incidents.models import Incident

from .models import ActionItem, ActionStatus, CauseCategory, Review, ReviewStatus
from .services.actions import ACTIVE, overdue_q

__all__ = [
    "COUNTED_REVIEW_STATUSES",
    "UNCATEGORISED",
    "UNCATEGORISED_LABEL",
    "WRONG_AREAS",
    "action_item_completion",
    "review_cause_counts",
    "review_wrong_area_counts",
]

COUNTED_REVIEW_STATUSES = (ReviewStatus.HELD, ReviewStatus.PUBLISHED)
# A review held without choosing a category keeps the field blank. It is counted on a row of its
# own, apart from "unknown" ("Not determined": the meeting looked and could not tell), so that
# the report shows how many reviews still need categorising.
UNCATEGORISED = ""
UNCATEGORISED_LABEL = "Not categorised"
# §8.2's "what went wrong" areas: the key in the result, and the review's field.
WRONG_AREAS = {
    "detection": "wrong_detection",
    "communication": "wrong_communication",
    "technical": "wrong_technical",
    "process": "wrong_process",
}
_LABELS = dict(CauseCategory.choices)
_ORDER = {value: index for index, value in enumerate(CauseCategory.values)}


def _pks(incidents: QuerySet[Incident]) -> QuerySet:
    # Only the keys: the caller's queryset may carry annotations and an ordering of its own.
    return incidents.order_by().values("pk")


def _counted_reviews(incidents: QuerySet[Incident]) -> QuerySet[Review]:
    return Review.objects.filter(incident__in=_pks(incidents), status__in=COUNTED_REVIEW_STATUSES)


def review_cause_counts(*, incidents: QuerySet[Incident]) -> list[tuple[str, str, int]]:
    """``(category, label, count)`` of the held or published reviews of ``incidents`` by their
    root cause category, most first (ties in :class:`CauseCategory` order, then the
    uncategorised row). Reviews without a category count under ``UNCATEGORISED`` (``""``, the
    stored value, so it filters as ``review__cause_category=""``), labelled "Not categorised".
    Categories no review chose are left out. One query."""
    rows = (
        _counted_reviews(incidents)
        .order_by()
        .values("cause_category")
        .annotate(count=Count("pk"))
        .values_list("cause_category", "count")
    )
    counts = [
        (category, _LABELS.get(category, UNCATEGORISED_LABEL), count) for category, count in rows
    ]
    return sorted(counts, key=lambda row: (-row[2], _ORDER.get(row[0], len(_ORDER))))


def review_wrong_area_counts(*, incidents: QuerySet[Incident]) -> dict[str, int]:
    """How many held or published reviews of ``incidents`` wrote something under each of §8.2's
    "what went wrong" areas: ``{"detection", "communication", "technical", "process"}`` → count
    (a review may count under several; the sections are stored stripped, so written means
    non-empty). One query."""
    totals = _counted_reviews(incidents).aggregate(
        **{area: Count("pk", filter=~Q(**{field: ""})) for area, field in WRONG_AREAS.items()}
    )
    return {area: totals[area] or 0 for area in WRONG_AREAS}


def action_item_completion(
    *,
    incidents: QuerySet[Incident] | None = None,
    due_from: date | None = None,
    due_to: date | None = None,
) -> dict[str, Any]:
    """How the action items of ``incidents`` (all items when None), due in ``[due_from,
    due_to)`` when given (either bound may be left open), are followed through. One query.

    * ``total``: the items; ``done``, ``wont_do``: in those states; ``open``: open or in
      progress; ``overdue``: open or in progress past the due date, as of today (the same rule
      as the action-item pages and reminders, ``reviews.services.actions``);
    * ``done_on_time``: done on or before the due date (``completed_at`` on the server's local
      date, as the due date is);
    * ``completion_rate``: ``done / (total - wont_do)`` — an item decided against is not a
      failure to follow through — or None when nothing is left to do;
    * ``on_time_rate``: ``done_on_time / done``, or None when nothing is done.

    Rates are fractions between 0 and 1, unrounded."""
    items = ActionItem.objects.all()
    if incidents is not None:
        items = items.filter(incident__in=_pks(incidents))
    if due_from is not None:
        items = items.filter(due_date__gte=due_from)
    if due_to is not None:
        items = items.filter(due_date__lt=due_to)
    done = Q(status=ActionStatus.DONE)
    totals = items.aggregate(
        total=Count("pk"),
        done=Count("pk", filter=done),
        wont_do=Count("pk", filter=Q(status=ActionStatus.WONT_DO)),
        open=Count("pk", filter=Q(status__in=ACTIVE)),
        overdue=Count("pk", filter=overdue_q()),
        done_on_time=Count("pk", filter=done & Q(completed_at__date__lte=F("due_date"))),
    )
    result: dict[str, Any] = {key: value or 0 for key, value in totals.items()}
    to_do = result["total"] - result["wont_do"]
    result["completion_rate"] = result["done"] / to_do if to_do else None
    result["on_time_rate"] = result["done_on_time"] / result["done"] if result["done"] else None
    return result
