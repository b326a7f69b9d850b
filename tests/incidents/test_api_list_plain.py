"""The incident list's plain path, on any database: which queries it takes (only choice
filters with valid values, anything else goes to the FilterSet), and its paginator
(``paginate_rows``) gives the pages and links DRF's ``paginate_queryset`` gives for the same
rows. tests/incidents/test_api_list_plain_pg.py serves both paths through the API on
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.http import QueryDict
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from incidents.api.filters import choice_filters
from incidents.api.incidents import IncidentListView, IncidentPagination
from incidents.models import Incident
from tests.factories import IncidentFactory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAGE = ("cursor", "page_size")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", []),
        ("status=open", [("status", ["open"])]),
        ("status=open&status=investigating&status=open", [("status", ["open", "investigating"])]),
        ("severity=4&severity=1&priority=2", [("severity_id", [4, 1]), ("priority", [2])]),
        ("status=open&cursor=anything&page_size=abc", [("status", ["open"])]),
    ],
)
def test_choice_filters_are_read_without_the_form(query, expected):
    assert choice_filters(QueryDict(query), ignored=PAGE) == expected


@pytest.mark.parametrize(
    "query",
    [
        "status=burning",  # not a choice: the form's 400
        "status=",
        "status=open&status=",
        "severity=7",
        "severity=01",
        "severity=%201",
        "priority=P1",
        "status=Open",
        "status=null",
        "service=checkout",  # the other filters: the FilterSet's
        "search=down",
        "customer_facing=true",
        "breached=false",
        "detected_after=2026-03-03T00:00:00Z",
        "ordering=severity",  # another ordering
        "format=json",
        "unknown=1",
    ],
)
def test_anything_else_is_left_to_the_filterset(query):
    assert choice_filters(QueryDict(query), ignored=PAGE) is None


# --- paginate_rows against paginate_queryset ---------------------------------------------------


@pytest.fixture
def ties(db):
    """Nine incidents, detected in groups at the same instant (cursors then need offsets)."""
    for n, minutes in enumerate([0, 0, 0, 5, 5, 9, 12, 12, 12]):
        moment = T0 + timedelta(minutes=minutes, microseconds=0 if n % 2 else 250)
        with time_machine.travel(moment, tick=False):
            IncidentFactory(status=["open", "investigating"][n % 2])


def _orm_fetch(*, ordering, before, after, offset, limit):
    queryset = Incident.objects.order_by(*ordering)
    position = ordering[0].lstrip("-")
    if before is not None:
        queryset = queryset.filter(**{f"{position}__lt": before})
    if after is not None:
        queryset = queryset.filter(**{f"{position}__gt": after})
    return list(queryset.values("id", "status", position)[offset : offset + limit])


def _page(url, *, rows: bool):
    request = Request(APIRequestFactory().get(url))
    view = IncidentListView()
    view.request = request
    paginator = IncidentPagination()
    ordering = paginator.get_ordering(request, None, view)
    if rows:
        page = paginator.paginate_rows(_orm_fetch, request, model=Incident, ordering=ordering)
    else:
        queryset = Incident.objects.values("id", "status", ordering[0].lstrip("-"))
        page = paginator.paginate_queryset(queryset, request, view)
    return [row["id"] for row in page], paginator.get_next_link(), paginator.get_previous_link()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 9, 10])
def test_paginate_rows_walks_as_paginate_queryset(ties, size):
    seen = []
    url = f"http://testserver/api/v1/incidents/?page_size={size}"
    visited = 0
    while url:
        expected = _page(url, rows=False)
        assert _page(url, rows=True) == expected, url
        ids, url, previous = expected
        seen += ids
        if previous:  # and back, through a reverse cursor
            assert _page(previous, rows=True) == _page(previous, rows=False), previous
        visited += 1
        assert visited < 20
    assert sorted(seen) == sorted(Incident.objects.values_list("id", flat=True))
    assert len(seen) == len(set(seen))


def test_paginate_rows_refuses_a_bad_cursor_as_paginate_queryset(ties):
    from rest_framework.exceptions import ValidationError

    url = "http://testserver/api/v1/incidents/?cursor=cD0yMDI2LTAzLTAyIGp1bms%3D"
    with pytest.raises(ValidationError) as by_rows:
        _page(url, rows=True)
    with pytest.raises(ValidationError) as by_queryset:
        _page(url, rows=False)
    assert by_rows.value.detail == by_queryset.value.detail
