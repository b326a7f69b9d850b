"""The one way Vigil shows a date or a time to a person.

Every date and time in the admin, the incident report and the messages people read (pages,
escalation steps, status-update e-mails, review and KPI e-mails) goes through :func:`when` or
:func:`when_relative` (in templates the ``when`` and ``when_relative`` filters of
``incidents.templatetags.vigil_time``):

* ``when``: ``3 Dec 2026, 14:05 CET`` — day, abbreviated English month, year, 24-hour time and
  the zone's abbreviation (a zone without one shows its offset: ``UTC-03``). ``seconds=True``
  adds the seconds (``14:05:09``) where they matter (a timeline). A date alone is ``3 Dec 2026``.
* ``when_relative``: ``14:05 CET (12 min ago)`` / ``14:05 CET (in 8 min)``; the date is added
  when the moment is not today in that zone (``2 Dec 2026, 23:50 CET (14 h 15 min ago)``).

The zone is the active one (:func:`django.utils.timezone.activate`): the signed-in user's
preference in the admin (``incidents.middleware.UserTimeZoneMiddleware``), the recipient's in a
message (:func:`user_zone`, :func:`user_zones`), otherwise ``settings.TIME_ZONE``
(``VIGIL_TIME_ZONE``). Machine formats (API JSON, Statuspage JSON, iCalendar, feeds, CSV) keep
ISO 8601 / RFC formats and never use this module.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, tzinfo
from functools import cache

from django.utils import timezone

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@cache
def available_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_named(name: str | None) -> tzinfo:
    """The zone of that IANA name; the default zone (``settings.TIME_ZONE``) for a blank or
    unknown name (a zone removed from the tz database must not break a page)."""
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return timezone.get_default_timezone()


def duration_text(seconds: float) -> str:
    """A short human duration: "45 s", "12 min", "3 h 10 min", "2 d 4 h"."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def zone_abbreviation(moment: datetime) -> str:
    name = moment.tzname() or ""
    if not name or name[0] in "+-":
        # zoneinfo names zones without a common abbreviation by their offset ("-03").
        return f"UTC{name}" if name else "UTC"
    return name


def _local(value: datetime, zone: tzinfo | None) -> datetime:
    zone = zone or timezone.get_current_timezone()
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value.astimezone(zone)


def date_text(value: date) -> str:
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def time_text(value: datetime, *, zone: tzinfo | None = None, seconds: bool = False) -> str:
    """The time of day with its zone: ``14:05 CET``."""
    local = _local(value, zone)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return f"{clock} {zone_abbreviation(local)}"


def when(
    value: datetime | date | None, *, zone: tzinfo | None = None, seconds: bool = False
) -> str:
    """``3 Dec 2026, 14:05 CET`` in ``zone`` (default: the active zone); a date alone is
    ``3 Dec 2026``; nothing is ``""``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, datetime):
        return date_text(value)
    local = _local(value, zone)
    return f"{date_text(local)}, {time_text(local, zone=local.tzinfo, seconds=seconds)}"


def relative_text(value: datetime, *, now: datetime | None = None) -> str:
    """ "12 min ago", "in 8 min" or "just now"."""
    delta = ((now or timezone.now()) - value).total_seconds()
    if abs(delta) < 60:
        return "just now"
    return f"{duration_text(delta)} ago" if delta > 0 else f"in {duration_text(delta)}"


def when_relative(
    value: datetime | date | None,
    *,
    zone: tzinfo | None = None,
    now: datetime | None = None,
) -> str:
    """``14:05 CET (12 min ago)`` — the date is added unless the moment is today in ``zone``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, datetime):
        return date_text(value)
    now = now or timezone.now()
    local = _local(value, zone)
    today = _local(now, local.tzinfo).date() == local.date()
    shown = time_text(local, zone=local.tzinfo) if today else when(local, zone=local.tzinfo)
    return f"{shown} ({relative_text(value, now=now)})"


def user_zone(user: object | None) -> tzinfo:
    """A person's time zone: their preference, else the default zone (one query at most)."""
    if user is None or not getattr(user, "pk", None):
        return timezone.get_default_timezone()
    from .models import UserPreference

    name = UserPreference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True)
    return zone_named(name.first())


def user_zones(user_ids) -> dict[int, tzinfo]:
    """Each of these users' zones in one query (users without a preference: the default)."""
    ids = {pk for pk in user_ids if pk}
    zones = dict.fromkeys(ids, timezone.get_default_timezone())
    if ids:
        from .models import UserPreference

        rows = UserPreference.objects.filter(user_id__in=ids).values_list("user_id", "time_zone")
        zones.update({user_id: zone_named(name) for user_id, name in rows})
    return zones
