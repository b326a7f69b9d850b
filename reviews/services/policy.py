"""Editing the review policy (one row, seeded) and the company closure days, audited in their
history. The admin and any API call these; the values are checked here, once."""

from __future__ import annotations

from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.db import transaction

from incidents.errors import ActionForbidden, InvalidInput
from incidents.models import SeverityLevel
from incidents.services.common import audited_delete, audited_save

from ..models import ClosureDay, ReviewPolicy
from .business_days import review_policy_get

__all__ = [
    "closure_day_create",
    "closure_day_delete",
    "closure_day_update",
    "review_policy_update",
]

MEETING_MINUTES = (15, 240)


def _require(actor: Any, perm: str, action: str) -> None:
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise ActionForbidden(action=action, user=actor)


def _levels() -> set[int]:
    return set(SeverityLevel.objects.values_list("level", flat=True)) or {1, 2, 3, 4}


def _severities(value: Any, field: str, errors: dict[str, str]) -> list[int] | None:
    if not isinstance(value, (list, tuple)) or any(
        isinstance(item, bool) or not isinstance(item, int) for item in value
    ):
        errors[field] = "A list of severity levels, e.g. [1, 2]."
        return None
    unknown = sorted(set(value) - _levels())
    if unknown:
        errors[field] = f"Unknown severity levels {unknown}; the levels are {sorted(_levels())}."
        return None
    return sorted(set(value))


def _meeting_minutes(value: Any, errors: dict[str, str]) -> dict[str, int] | None:
    low, high = MEETING_MINUTES
    if not isinstance(value, dict):
        errors["meeting_minutes"] = 'Minutes per severity, e.g. {"1": 90, "2": 60}.'
        return None
    cleaned = {}
    levels = {str(level) for level in _levels()}
    for key, minutes in value.items():
        if str(key) not in levels:
            errors["meeting_minutes"] = f"Unknown severity level {key!r}."
            return None
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not low <= minutes <= high:
            errors["meeting_minutes"] = f"Whole minutes from {low} to {high} per severity."
            return None
        cleaned[str(key)] = minutes
    return cleaned


@transaction.atomic
def review_policy_update(
    *, policy: ReviewPolicy | None = None, actor: Any, source: str, **changes: Any
) -> ReviewPolicy:
    """Change the review policy (``reviews.change_reviewpolicy``). Every wrong value is named
    in one InvalidInput and nothing changes; an unchanged policy is not saved again."""
    _require(actor, "reviews.change_reviewpolicy", "change the review policy")
    locked = ReviewPolicy.objects.select_for_update().get(pk=(policy or review_policy_get()).pk)
    fields = {f.name for f in ReviewPolicy._meta.concrete_fields} - {"id"}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise InvalidInput({name: "Not a field of the review policy." for name in unknown})
    errors: dict[str, str] = {}
    for field in ("required_severities", "close_guard_severities"):
        if field in changes:
            changes[field] = _severities(changes[field], field, errors)
    if "meeting_minutes" in changes:
        changes["meeting_minutes"] = _meeting_minutes(changes["meeting_minutes"], errors)
    if "time_zone" in changes:
        try:
            ZoneInfo(str(changes["time_zone"]).strip())
            changes["time_zone"] = str(changes["time_zone"]).strip()
        except (ZoneInfoNotFoundError, ValueError):
            errors["time_zone"] = f"{changes['time_zone']!r} is not a known time zone."
    for name, value in changes.items():
        if name not in errors:
            setattr(locked, name, value)
    start, end = locked.workday_start, locked.workday_end
    if isinstance(start, time) and isinstance(end, time) and start >= end:
        errors["workday_end"] = "The working day ends after it starts."
    try:
        locked.full_clean()
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, " ".join(messages))
    if errors:
        raise InvalidInput(errors)
    if changes:
        audited_save(locked, actor=actor, reason="review policy changed")
    return locked


def _closure_values(day: Any, name: Any, errors: dict[str, str]) -> tuple[Any, str]:
    if not isinstance(day, date):
        errors["date"] = "Give a date."
    name = " ".join(str(name or "").split())
    if not name:
        errors["name"] = "Name the closure, e.g. Company offsite."
    elif len(name) > 120:
        errors["name"] = "At most 120 characters."
    return day, name


@transaction.atomic
def closure_day_create(*, actor: Any, source: str, date: Any, name: Any) -> ClosureDay:
    """Add a company closure day (not a business day for review deadlines)."""
    _require(actor, "reviews.add_closureday", "add closure days")
    errors: dict[str, str] = {}
    day, name = _closure_values(date, name, errors)
    if not errors and ClosureDay.objects.filter(date=day).exists():
        errors["date"] = f"{day} is a closure day already."
    if errors:
        raise InvalidInput(errors)
    closure = ClosureDay(date=day, name=name)
    audited_save(closure, actor=actor, reason="closure day added")
    return closure


@transaction.atomic
def closure_day_update(
    *, closure_day: ClosureDay, actor: Any, source: str, **changes: Any
) -> ClosureDay:
    """Change a closure day's date or name."""
    _require(actor, "reviews.change_closureday", "change closure days")
    unknown = sorted(set(changes) - {"date", "name"})
    if unknown:
        raise InvalidInput({name: "Not a field of a closure day." for name in unknown})
    locked = ClosureDay.objects.select_for_update().get(pk=closure_day.pk)
    errors: dict[str, str] = {}
    day, name = _closure_values(
        changes.get("date", locked.date), changes.get("name", locked.name), errors
    )
    if not errors and ClosureDay.objects.filter(date=day).exclude(pk=locked.pk).exists():
        errors["date"] = f"{day} is a closure day already."
    if errors:
        raise InvalidInput(errors)
    locked.date, locked.name = day, name
    audited_save(locked, actor=actor, reason="closure day changed")
    return locked


@transaction.atomic
def closure_day_delete(*, closure_day: ClosureDay, actor: Any, source: str) -> None:
    """Remove a closure day (it becomes a business day again, unless a weekend or holiday)."""
    _require(actor, "reviews.delete_closureday", "delete closure days")
    audited_delete(closure_day, actor=actor, reason="closure day removed")
