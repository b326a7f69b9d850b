"""Cursor pagination: stable pages under concurrent inserts, constant cost at any depth."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import Cursor, CursorPagination, _reverse_ordering

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

    def paginate_rows(
        self,
        fetch: Callable[..., Sequence[dict[str, Any]]],
        request,
        *,
        model,
        ordering: tuple[str, ...],
    ) -> list[dict[str, Any]]:
        """``paginate_queryset`` for rows read without a queryset: the same cursor, page and
        links, with the query left to ``fetch(ordering=, before=, after=, offset=, limit=)``.
        It returns, as dicts holding ``ordering[0]``'s field, the rows in ``ordering`` whose
        first field is before (or after) the position given, from ``offset``, at most
        ``limit`` of them. The steps are DRF's, in its order; only the queryset's ``order_by``,
        ``filter`` and slice became arguments."""
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = ordering
        self._model = model
        self.cursor = self.decode_cursor(request)
        offset, reverse, current_position = self.cursor or (0, False, None)
        before = after = None
        if current_position is not None:
            # DRF: (cursor reversed) XOR (ordering descending) pages towards smaller values.
            if reverse != ordering[0].startswith("-"):
                before = current_position
            else:
                after = current_position
        results = list(
            fetch(
                ordering=_reverse_ordering(ordering) if reverse else ordering,
                before=before,
                after=after,
                offset=offset,
                limit=self.page_size + 1,
            )
        )
        self.page = results[: self.page_size]
        if len(results) > len(self.page):
            has_following_position = True
            following_position = self._get_position_from_instance(results[-1], ordering)
        else:
            has_following_position = False
            following_position = None
        if reverse:
            self.page.reverse()
            self.has_next = current_position is not None or offset > 0
            self.has_previous = has_following_position
            if self.has_next:
                self.next_position = current_position
            if self.has_previous:
                self.previous_position = following_position
        else:
            self.has_next = has_following_position
            self.has_previous = current_position is not None or offset > 0
            if self.has_next:
                self.next_position = following_position
            if self.has_previous:
                self.previous_position = current_position
        if (self.has_previous or self.has_next) and self.template is not None:
            self.display_page_controls = True
        return self.page

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
