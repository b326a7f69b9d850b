"""Fields and small serializers shared by the API's input and output serializers."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from django.utils import timezone
from rest_framework import serializers

# Bounds of the integer columns, so out-of-range numbers are a 400 and never reach the database.
INT_MAX = 2**31 - 1
TEXT_MAX = 20_000


class TextField(serializers.CharField):
    """A strict CharField: a JSON string only (DRF would turn 5 into "5"), and no lone
    surrogates or NUL bytes, which JSON allows but no database column can store. Checked here,
    before any subclass looks the value up (DRF's own NUL validator runs only afterwards)."""

    default_error_messages = {
        "not_a_string": "Expected a string.",
        "null_characters": "Null characters are not allowed.",
    }

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        value = super().to_internal_value(data)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("invalid")
        if "\x00" in value:
            self.fail("null_characters")
        return value


class BoundedDurationField(serializers.DurationField):
    """A duration between one second and a year (larger values overflow the database column),
    written as ISO 8601 (``PT15M``); Django's ``HH:MM:SS`` form is accepted on input too."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", timedelta(seconds=1))
        kwargs.setdefault("max_value", timedelta(days=365))
        kwargs.setdefault("format", "iso-8601")
        super().__init__(**kwargs)


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField(help_text="Full name, or the username when none is set.")


def user_ref(user: Any) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "id": user.pk,
        "username": user.get_username(),
        "name": user.get_full_name() or user.get_username(),
    }


def iso(value: datetime | None, tz: tzinfo | None = None) -> str | None:
    """The API's datetime format (DRF's): ISO 8601 in the current time zone (or ``tz``, which
    a serializer looks up once for all its rows), UTC as ``Z``."""
    if value is None:
        return None
    text = value.astimezone(tz or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
