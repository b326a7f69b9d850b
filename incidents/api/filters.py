"""Query filters of the incident list."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from functools import cache
from typing import Any

import django_filters as filters
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_filters.fields import IsoDateTimeField, RangeField
from django_filters.widgets import DateRangeWidget

from ..models import Incident, Status

SEVERITY_CHOICES = [(level, f"Sev {level}") for level in (1, 2, 3, 4)]
PRIORITY_CHOICES = [(priority, f"P{priority}") for priority in (1, 2, 3, 4)]


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC: PostgreSQL refuses offsets past ±15:59."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError("Date and time out of range.", code="invalid") from None


class UtcIsoDateTimeRangeField(RangeField):
    widget = DateRangeWidget  # <name>_after / <name>_before

    def __init__(self, *args, **kwargs):
        super().__init__((UtcIsoDateTimeField(), UtcIsoDateTimeField()), *args, **kwargs)


class UtcIsoDateTimeFromToRangeFilter(filters.IsoDateTimeFromToRangeFilter):
    field_class = UtcIsoDateTimeRangeField


class IncidentFilter(filters.FilterSet):
    # Explicit labels: django-filter would otherwise derive each from the model's verbose names
    # on every request.
    # distinct=False: these are columns of the incident itself, no join can duplicate a row,
    # and DISTINCT over the page's wide rows would make PostgreSQL sort every match.
    status = filters.MultipleChoiceFilter(
        label="Status",
        choices=Status.choices,
        distinct=False,
        help_text="One or more statuses (repeat the parameter).",
    )
    severity = filters.MultipleChoiceFilter(
        label="Severity",
        field_name="severity_id",
        choices=SEVERITY_CHOICES,
        distinct=False,
        help_text="One or more levels.",
    )
    priority = filters.MultipleChoiceFilter(
        label="Priority",
        choices=PRIORITY_CHOICES,
        distinct=False,
        help_text="One or more priorities.",
    )
    service = filters.CharFilter(
        label="Service",
        method="filter_service",
        max_length=60,
        help_text="Slug of an affected service.",
    )
    customer_facing = filters.BooleanFilter(
        label="Customer-facing",
    )
    breached = filters.BooleanFilter(
        label="Breached",
        method="filter_breached",
        help_text="Response or resolution target missed (or not).",
    )
    created = UtcIsoDateTimeFromToRangeFilter(
        label="Created",
        field_name="created_at",
        help_text="created_after / created_before (ISO 8601).",
    )
    detected = UtcIsoDateTimeFromToRangeFilter(
        label="Detected",
        field_name="detected_at",
        help_text="detected_after / detected_before (ISO 8601).",
    )
    search = filters.CharFilter(
        label="Search",
        method="filter_search",
        max_length=200,
        help_text="Text in the ID or the title.",
    )

    class Meta:
        model = Incident
        fields: list[str] = []

    def get_form_class(self):
        # django-filter builds a new form class (and its fields) for every request; it depends
        # only on the declared filters, and each form deep-copies its fields anyway.
        if "_built_form_class" not in type(self).__dict__:
            type(self)._built_form_class = super().get_form_class()
        return type(self)._built_form_class

    def filter_service(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # A subquery, not a join: no duplicate rows and no DISTINCT on the page query.
        through = Incident.services.through.objects.filter(service__slug=value)
        return queryset.filter(pk__in=through.values("incident_id"))

    def filter_breached(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        now = timezone.now()
        return queryset.breached(now) if value else queryset.not_breached(now)

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(number__icontains=value) | Q(title__icontains=value))


def choice_filters(params: Any, *, ignored: Iterable[str] = ()) -> list[tuple[str, list]] | None:
    """The query's filters as (column, values) when all of them are ``IncidentFilter``'s plain
    multiple-choice filters (``status``, ``severity``, ``priority``) with only valid values,
    besides the parameters ``ignored``; otherwise None, and the FilterSet reads them (and
    answers a bad value with its 400). Spares the common request the filter form: building
    it deep-copies every field, and each of its filters clones the queryset."""
    accepted = _plain_choice_filters()
    ignored = set(ignored)
    found = []
    for name in params:
        if name in ignored:
            continue
        if name not in accepted:
            return None
        column, valid = accepted[name]
        values = params.getlist(name)
        if not values or any(value not in valid for value in values):
            return None
        found.append((column, list(dict.fromkeys(valid[value] for value in values))))
    return found


@cache
def _plain_choice_filters() -> dict[str, tuple[str, dict[str, Any]]]:
    # The filters whose whole effect is "column IN (values)": valid values are the choices'
    # keys as text (what the form's MultipleChoiceField accepts), each for its stored value.
    plain = {}
    for name, declared in IncidentFilter.base_filters.items():
        if (
            type(declared) is filters.MultipleChoiceFilter
            and declared.method is None
            and declared.lookup_expr == "exact"
            and declared.always_filter
            and not (declared.exclude or declared.conjoined or declared.distinct)
        ):
            choices = {str(key): key for key, _ in declared.extra["choices"]}
            if declared.null_value not in choices:
                plain[name] = (declared.field_name, choices)
    return plain
