"""The review's calendar invitation (iCalendar, RFC 5545 / iTIP RFC 5546), built with the
``icalendar`` package, which escapes every text value and parameter: a title holding a line
break or ``BEGIN:VEVENT`` stays text inside SUMMARY and cannot start an event of its own.

* ``METHOD:REQUEST`` invites (and, with a higher SEQUENCE, reschedules); ``METHOD:CANCEL`` with
  ``STATUS:CANCELLED`` withdraws the meeting (the whole review, or one removed attendee).
* ``UID`` is ``<review.uid>@<domain of DEFAULT_FROM_EMAIL>``: stable for the review's life, so
  every calendar updates the one meeting it already holds.
* ``ORGANIZER`` is Vigil's sender (DEFAULT_FROM_EMAIL), who sends every invitation and update;
  the facilitator is an ``ATTENDEE`` with ``ROLE=CHAIR``, the others ``REQ-PARTICIPANT``.
* Times are in UTC (``...Z``): no VTIMEZONE to get wrong; calendars show them in local time.
* ``DESCRIPTION`` is §8.2's agenda with its time boxes and the link to the review page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from icalendar import Calendar, Event, vCalAddress, vText

from ..models import Review

__all__ = [
    "AGENDA",
    "Invitee",
    "invitation_description",
    "invitation_ics",
    "invitation_summary",
    "review_uid",
    "review_url",
]

PRODID = "-//Vigil//Post-incident reviews//EN"

# §8.2: the review meeting's agenda and its time boxes, in minutes.
AGENDA: tuple[tuple[str, int], ...] = (
    ("Incident overview", 10),
    ("What went well", 20),
    ("What went wrong", 30),
    ("Root cause analysis", 20),
    ("Action items", 10),
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Invitee:
    email: str
    name: str = ""
    chair: bool = False


def _domain() -> str:
    sender = parseaddr(getattr(settings, "DEFAULT_FROM_EMAIL", "") or "")[1]
    return sender.rpartition("@")[2] or "vigil.invalid"


def review_uid(review: Review) -> str:
    """The invitation's UID: stable for the review, unique across Vigil installations."""
    return f"{review.uid}@{_domain()}"


def review_url(review: Review) -> str:
    """The review's page in the admin (the incident's page when no review page exists)."""
    base = getattr(settings, "VIGIL_BASE_URL", "").rstrip("/")
    try:
        path = reverse("admin:reviews_review_change", args=[review.pk])
    except NoReverseMatch:
        path = reverse("admin:incidents_incident_change", args=[review.incident_id])
    return base + path


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text or "").split())


def invitation_summary(review: Review) -> str:
    incident = review.incident
    return f"Post-incident review: {incident.number} {_one_line(incident.title)}"


def invitation_description(review: Review) -> str:
    """The invitation's body: §8.2's agenda with its time boxes, and where to find the review."""
    incident = review.incident
    lines = [
        f"Post-incident review of {incident.number} {_one_line(incident.title)} "
        f"(Sev {incident.severity_id}).",
        f"Due by {review.due_date:%A %d %B %Y}.",
    ]
    facilitator = review.facilitator_name or review.facilitator_email
    if facilitator:
        lines.append(f"Facilitator: {facilitator}.")
    lines += ["", "Agenda (§8.2):"]
    for number, (item, minutes) in enumerate(AGENDA, start=1):
        lines.append(f"{number}. {item} ({minutes} min)")
    lines += ["", f"Review page: {review_url(review)}"]
    return "\n".join(lines)


def _address(email: str, name: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    if _one_line(name):
        address.params["CN"] = vText(_one_line(name))
    return address


def invitation_ics(
    *,
    review: Review,
    method: str,
    invitees: list[Invitee],
    now: datetime | None = None,
) -> str:
    """The iCalendar text of ``review``'s invitation: ``method`` "REQUEST" (invite, update) or
    "CANCEL" (withdraw, for ``invitees``). The review's SEQUENCE is used as it stands: the
    caller increments it before building a reschedule."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"Unknown iTIP method {method!r}.")
    now = now or timezone.now()
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)

    event = Event()
    event.add("uid", review_uid(review))
    event.add("sequence", review.sequence)
    event.add("dtstamp", now.astimezone(UTC))
    starts_at = review.starts_at
    ends_at = review.ends_at or (starts_at + timedelta(minutes=60) if starts_at else None)
    if starts_at is not None:
        event.add("dtstart", starts_at.astimezone(UTC))
        event.add("dtend", ends_at.astimezone(UTC))
    event.add("summary", invitation_summary(review))
    event.add("description", invitation_description(review))
    event.add("url", review_url(review))
    if review.location:
        event.add("location", _one_line(review.location))
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")

    organizer_name, organizer_email = parseaddr(getattr(settings, "DEFAULT_FROM_EMAIL", ""))
    organizer = _address(organizer_email or "vigil@vigil.invalid", organizer_name or "Vigil")
    event.add("organizer", organizer)
    for invitee in invitees:
        attendee = _address(invitee.email, invitee.name)
        attendee.params["ROLE"] = vText("CHAIR" if invitee.chair else "REQ-PARTICIPANT")
        attendee.params["PARTSTAT"] = vText("NEEDS-ACTION")
        attendee.params["RSVP"] = vText("FALSE" if method == "CANCEL" else "TRUE")
        attendee.params["CUTYPE"] = vText("INDIVIDUAL")
        event.add("attendee", attendee, encode=0)
    cal.add_component(event)
    return cal.to_ical().decode("utf-8")
