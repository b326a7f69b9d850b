"""The review's calendar invitation, as delivered: an email per attendee whose text/calendar
part (and invite.ics attachment) parses back with ``icalendar`` into one event with a stable
UID, the SEQUENCE of the change, the organizer, the attendees and §8.2's agenda; a reschedule
is the same UID with the next SEQUENCE; a cancellation METHOD:CANCEL; a hostile title stays
text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from icalendar import Calendar

from incidents.models import Source
from reviews.services.booking import review_cancel, review_reschedule
from tests.reviews import booking_fixtures
from tests.reviews.booking_fixtures import (
    attachment_of,
    calendar_of,
    close,
    deliver,
    make_incident,
)

team = booking_fixtures.team
booked = booking_fixtures.booked
us_holidays = booking_fixtures.us_holidays

pytestmark = pytest.mark.django_db

LATER = datetime(2025, 6, 6, 9, 0, tzinfo=UTC)


def by_recipient(messages) -> dict:
    return {m.to[0]: m for m in messages}


def test_every_attendee_gets_a_request_that_parses_back(booked):
    messages = by_recipient(deliver())

    assert set(messages) == {
        "ines@example.com",
        "theo@example.com",
        "olga@example.com",
        "it-manager@example.com",
    }
    cal, content_type = calendar_of(messages["theo@example.com"])
    assert content_type.startswith("text/calendar")
    assert "method=REQUEST" in content_type.replace('"', "")
    assert str(cal["METHOD"]) == "REQUEST"
    [event] = cal.walk("VEVENT")
    assert str(event["UID"]) == f"{booked.uid}@example.org"
    assert int(event["SEQUENCE"]) == 0
    assert str(event["STATUS"]) == "CONFIRMED"
    incident = booked.incident
    assert str(event["SUMMARY"]) == f"Post-incident review: {incident.number} Checkout down"
    assert event.decoded("DTSTART") == booked.starts_at
    assert event.decoded("DTEND") == booked.ends_at
    assert (booked.ends_at - booked.starts_at).total_seconds() == 90 * 60  # Sev 1
    assert event.decoded("DTSTAMP") is not None
    assert str(event["ORGANIZER"]) == "mailto:vigil@example.org"
    attendees = {str(a): a.params for a in event["ATTENDEE"]}
    assert set(attendees) == {f"mailto:{address}" for address in messages}
    assert attendees["mailto:ines@example.com"]["ROLE"] == "CHAIR"
    assert attendees["mailto:theo@example.com"]["ROLE"] == "REQ-PARTICIPANT"
    assert attendees["mailto:theo@example.com"]["PARTSTAT"] == "NEEDS-ACTION"
    assert attendees["mailto:theo@example.com"]["RSVP"] == "TRUE"
    description = str(event["DESCRIPTION"])
    for line in (
        "1. Incident overview (10 min)",
        "2. What went well (20 min)",
        "3. What went wrong (30 min)",
        "4. Root cause analysis (20 min)",
        "5. Action items (10 min)",
    ):
        assert line in description
    assert str(event["URL"]).startswith("https://vigil.example.org/")
    # The attachment is the same calendar, for clients that import files.
    assert Calendar.from_ical(attachment_of(messages["theo@example.com"])) == cal


def test_a_reschedule_is_the_same_uid_with_the_next_sequence(booked, team):
    first = calendar_of(deliver()[0])[0].walk("VEVENT")[0]

    with time_machine.travel(LATER, tick=False):
        review_reschedule(
            review=booked,
            actor=team["im"],
            source=Source.ADMIN,
            starts_at=datetime(2025, 6, 10, 13, 0, tzinfo=UTC),
            location="Room 4",
        )
    messages = deliver()

    assert len(messages) == 4
    assert all(m.subject.startswith("Updated invitation:") for m in messages)
    event = calendar_of(messages[0])[0].walk("VEVENT")[0]
    assert str(event["UID"]) == str(first["UID"])
    assert int(event["SEQUENCE"]) == int(first["SEQUENCE"]) + 1
    assert event.decoded("DTSTART") == datetime(2025, 6, 10, 13, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2025, 6, 10, 14, 30, tzinfo=UTC)
    assert str(event["LOCATION"]) == "Room 4"


def test_a_cancellation_is_method_cancel_to_everyone(booked, team):
    deliver()

    with time_machine.travel(LATER, tick=False):
        review_cancel(review=booked, actor=team["im"], source=Source.ADMIN, reason="Merged.")
    messages = deliver()

    assert len(messages) == 4
    cal, content_type = calendar_of(messages[0])
    assert "method=CANCEL" in content_type.replace('"', "")
    assert str(cal["METHOD"]) == "CANCEL"
    [event] = cal.walk("VEVENT")
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == f"{booked.uid}@example.org"
    assert int(event["SEQUENCE"]) == 1
    assert "Reason: Merged." in messages[0].body


@pytest.mark.parametrize(
    "title",
    [
        "Down\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil@example.com\r\nSUMMARY:Injected",
        'BEGIN:VEVENT;X="a"\nATTENDEE:mailto:evil@example.com',
    ],
)
def test_a_hostile_title_cannot_inject_an_event(team, title):
    incident = close(make_incident(team, title=title))

    messages = deliver()

    for message in messages:
        cal = calendar_of(message)[0]
        events = cal.walk("VEVENT")
        assert len(events) == 1
        [event] = events
        assert str(event["SUMMARY"]).startswith(f"Post-incident review: {incident.number} ")
        assert "\n" not in str(event["SUMMARY"])
        assert "mailto:evil@example.com" not in [str(a) for a in event["ATTENDEE"]]
        assert "evil@example.com" not in str(event.get("UID"))
        assert Calendar.from_ical(attachment_of(message)).walk("VEVENT") == events


def test_the_outbox_refuses_a_calendar_that_does_not_match_its_method(incident):
    from escalation.outbox import notification_enqueue

    ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    for context, channel in (
        ({"ics": ics, "ics_method": "CANCEL"}, "email"),
        ({"ics": ics, "ics_method": "PUBLISH"}, "email"),
        ({"ics": "not a calendar", "ics_method": "REQUEST"}, "email"),
        ({"ics": ics, "ics_method": "REQUEST"}, "slack"),
    ):
        with pytest.raises(ValueError):
            notification_enqueue(
                incident=incident,
                channel=channel,
                recipient="someone@example.com",
                subject="Invitation",
                body="Hello",
                template="review_invitation",
                reason="test",
                idempotency_key=f"review-bad:{channel}:{context['ics_method']}",
                context=context,
            )
