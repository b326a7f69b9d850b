"""Cursor pagination: stable pages under concurrent inserts, constant cost at any depth."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import Cursor, CursorPagination

INVALID_CURSOR = "Invalid cursor: use the `next` or `previous` link of a previous page."


def _normalized(value: object) -> str:
    """A cursor position the database accepts: date-times in UTC, integers within 64 bits."""
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError("out of range")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL")
    return str(value)


class VigilCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = ("-id",)
    invalid_cursor_message = INVALID_CURSOR

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError({"cursor": [INVALID_CURSOR]}) from None
        if cursor is not None and cursor.position is not None:
            # A forged position would otherwise reach the database as a malformed value.
            name = self.ordering[0].lstrip("-")
            try:
                field = self._model._meta.get_field(name)
            except FieldDoesNotExist:
                field = next(f for f in self._model._meta.concrete_fields if f.attname == name)
            try:
                position = _normalized(field.to_python(cursor.position))
            except (ValidationError, ValueError, TypeError, OverflowError):
                raise exceptions.ValidationError({"cursor": [INVALID_CURSOR]}) from None
            cursor = Cursor(offset=cursor.offset, reverse=cursor.reverse, position=position)
        return cursor


class StableOrderingFilter(OrderingFilter):
    """``?ordering=`` with the id as tie-breaker (in the same direction), so that cursor offsets
    within equal values are stable; ``severity`` orders by its stored level."""

    aliases = {"severity": "severity_id", "-severity": "-severity_id"}

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view) or ()
        ordering = [self.aliases.get(term, term) for term in ordering]
        if ordering and not any(term.lstrip("-") == "id" for term in ordering):
            ordering.append("-id" if ordering[0].startswith("-") else "id")
        return tuple(ordering)
