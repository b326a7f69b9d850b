"""Shared setup of the booking and calendar tests: a Sev 1 incident with a response team, an
owned service and an escalation to the IT manager, closed at a frozen moment; the invitations
delivered as the outbox's worker would, and parsed back with ``icalendar``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from icalendar import Calendar

from escalation.models import Notification, NotificationStatus
from escalation.services import notification_send
from incidents.models import Kind, Source
from incidents.services import incident_transition, incident_update
from incidents.services.common import timeline_record
from reviews.models import Review
from tests.events import follow_events
from tests.factories import IncidentFactory, ServiceFactory

# Thu 5 June 2025, 14:00 UTC: due Thu 12 June (5 US business days), proposed Mon 9 June.
CLOSED_AT = datetime(2025, 6, 5, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def us_holidays(settings):
    settings.VIGIL_HOLIDAYS_COUNTRY = "US"
    settings.VIGIL_HOLIDAYS_SUBDIVISION = ""
    settings.DEFAULT_FROM_EMAIL = "Vigil <vigil@example.org>"
    settings.VIGIL_BASE_URL = "https://vigil.example.org"


@pytest.fixture
def team(make_user):
    return {
        "im": make_user("Incident Manager", username="ines", email="ines@example.com"),
        "tl": make_user("Technical Lead", username="theo", email="theo@example.com"),
        "owner": make_user("Viewer", username="olga", email="olga@example.com"),
    }


def make_incident(
    team, *, severity=1, title="Checkout down", status="resolved", at=CLOSED_AT - timedelta(hours=3)
):
    """Made at ``at`` (frozen): the close's events are then followed in order after these."""
    service = ServiceFactory(slug="payments", name="Payments")
    service.owner = team["owner"]
    service.save()
    with time_machine.travel(at, tick=False):
        return _make(team, severity=severity, title=title, status=status, service=service)


def _make(team, *, severity, title, status, service):
    incident = IncidentFactory(
        status=status,
        severity=severity,
        title=title,
        services=[service],
        roles={"incident_manager": team["im"], "technical_lead": team["tl"]},
    )
    # As escalation records a level that fired (the level's name in data["target"]).
    timeline_record(
        incident=incident,
        kind=Kind.ESCALATION,
        source=Source.SYSTEM,
        actor=None,
        message="Escalated to IT Manager (Sev 1, 30 min elapsed).",
        data={"step": "sev1-0:30:00", "target": "IT Manager", "notifications": []},
    )
    return incident


def close(incident, *, at=CLOSED_AT, actor=None):
    with time_machine.travel(at, tick=False):
        incident = incident_update(
            incident=incident,
            actor=None,
            source=Source.SYSTEM,
            root_cause="A bad release.",
            business_impact="Checkout down 20 minutes.",
        )
        incident = incident_transition(
            incident=incident, action="close", actor=actor, source=Source.SYSTEM
        )
        follow_events()
    return incident


@pytest.fixture
def booked(team) -> Review:
    incident = close(make_incident(team))
    return Review.objects.get(incident=incident)


def deliver() -> list:
    """Send every pending review message as the outbox's worker would; the new emails."""
    before = len(mail.outbox)
    pending = Notification.objects.filter(
        status=NotificationStatus.PENDING, idempotency_key__startswith="review-"
    ).order_by("pk")
    for pk in pending.values_list("pk", flat=True):
        assert notification_send(notification_id=pk).result == "sent"
    return mail.outbox[before:]


def calendar_of(message) -> tuple[Calendar, str]:
    """The invitation in ``message``: the text/calendar alternative parsed back, and its
    Content-Type header."""
    parsed = message.message()
    parts = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [p.get_content_type() for p in parsed.walk()]
    part = parts[0]
    return Calendar.from_ical(part.get_payload(decode=True)), part["Content-Type"]


def attachment_of(message) -> bytes:
    for name, content, _mimetype in message.attachments:
        if name == "invite.ics":
            return content
    raise AssertionError("no invite.ics attachment")
