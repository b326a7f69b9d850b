"""``{% load vigil_time %}``: the one way templates show a date or a time (see
:mod:`incidents.timeformat`).

* ``{{ moment|when }}`` → ``3 Dec 2026, 14:05 CET``; ``{{ moment|when:"seconds" }}`` →
  ``3 Dec 2026, 14:05:09 CET``; a date → ``3 Dec 2026``.
* ``{{ moment|when_relative }}`` → ``14:05 CET (12 min ago)`` (the date added unless today).
* ``{{ moment|when_time }}`` → ``14:05 CET`` (beside a full date already shown).

In the active time zone: the signed-in person's in the admin, the recipient's in a message
(``timezone.override``), else ``VIGIL_TIME_ZONE``. An empty value gives ``""``, so
``|default:"–"`` works.
"""

from __future__ import annotations

from django import template

from .. import timeformat

register = template.Library()


@register.filter
def when(value, arg: str = "") -> str:
    try:
        return timeformat.when(value, seconds=arg == "seconds")
    except (AttributeError, TypeError, ValueError):
        return ""


@register.filter
def when_relative(value) -> str:
    try:
        return timeformat.when_relative(value)
    except (AttributeError, TypeError, ValueError):
        return ""


@register.filter
def when_time(value, arg: str = "") -> str:
    if not value:
        return ""
    try:
        return timeformat.time_text(value, seconds=arg == "seconds")
    except (AttributeError, TypeError, ValueError):
        return ""
