"""Booking a review from the admin: the incident page's "Post-incident review" panel books it
(the invitations written to the outbox), and the review page reschedules it, cancels it (with a
reason), changes the facilitator and invites or uninvites someone — each through the booking
services, refusals shown as messages with nothing changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from escalation.models import Notification
from reviews.models import AttendeeReason, Review, ReviewStatus
from reviews.services.business_days import policy_zone, review_policy_get
from reviews.services.invitations import INVITATION_TEMPLATE
from tests.reviews import booking_fixtures
from tests.reviews.booking_fixtures import make_incident

pytestmark = pytest.mark.django_db

team = booking_fixtures.team
us_holidays = booking_fixtures.us_holidays


def incident_url(incident) -> str:
    return f"/admin/incidents/incident/{incident.pk}/change/"


def book_url(incident) -> str:
    return f"/admin/reviews/review/book/{incident.pk}/"


def review_url(review, suffix: str = "") -> str:
    return (
        f"/admin/reviews/review/{review.pk}/change/"
        if not suffix
        else (f"/admin/reviews/review/{review.pk}/{suffix}/")
    )


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def invitations(incident) -> list[Notification]:
    return list(Notification.objects.filter(incident=incident, template=INVITATION_TEMPLATE))


@pytest.fixture
def open_incident(team):
    return make_incident(team, status="resolved", at=timezone.now() - timedelta(hours=2))


@pytest.fixture
def booked_review(client, team, open_incident) -> Review:
    client.force_login(team["im"])
    response = client.post(book_url(open_incident))
    assert response.status_code == 302
    return Review.objects.get(incident=open_incident)


def test_the_incident_page_offers_to_book_a_review(client, team, open_incident):
    client.force_login(team["im"])

    page = client.get(incident_url(open_incident)).content.decode()

    assert 'id="panel-review"' in page
    assert f'action="{book_url(open_incident)}"' in page
    assert "Book a review" in page


def test_booking_from_the_incident_page_writes_the_invitations(client, team, open_incident):
    client.force_login(team["im"])

    response = client.post(book_url(open_incident))

    assert response.status_code == 302
    assert response["Location"].startswith(incident_url(open_incident))
    review = Review.objects.get(incident=open_incident)
    assert review.status == ReviewStatus.BOOKED
    sent_to = {n.recipient for n in invitations(open_incident)}
    assert {"ines@example.com", "theo@example.com", "olga@example.com"} <= sent_to
    assert all(n.context.get("ics_method") == "REQUEST" for n in invitations(open_incident))
    assert any("Review booked" in text for text in texts(response))
    page = client.get(incident_url(open_incident)).content.decode()
    assert "Book a review" not in page
    assert f"/admin/reviews/review/{review.pk}/change/" in page
    assert "Booked" in page


def test_a_viewer_cannot_book_a_review(client, make_user, open_incident):
    viewer = make_user("Viewer", username="vera", email="vera@example.com")
    client.force_login(viewer)

    assert "Book a review" not in client.get(incident_url(open_incident)).content.decode()
    response = client.post(book_url(open_incident))

    assert response.status_code == 302
    assert any(text.startswith("No review booked") for text in texts(response))
    assert not Review.objects.filter(incident=open_incident).exists()
    assert invitations(open_incident) == []


def test_a_cancelled_incident_gets_no_review(client, team):
    incident = make_incident(team, status="cancelled", at=timezone.now() - timedelta(hours=2))
    client.force_login(team["im"])

    assert "Book a review" not in client.get(incident_url(incident)).content.decode()
    response = client.post(book_url(incident))

    assert response.status_code == 302
    assert any(text.startswith("No review booked") for text in texts(response))
    assert not Review.objects.filter(incident=incident).exists()
    assert invitations(incident) == []


def test_rescheduling_moves_the_meeting_and_sends_the_next_sequence(client, team, booked_review):
    review = booked_review
    policy = review_policy_get()
    policy.time_zone = "America/New_York"  # the form's time is read in the policy's zone
    policy.save()
    before = review.sequence
    sent_before = len(invitations(review.incident))
    day = (timezone.now() + timedelta(days=10)).date()

    page = client.get(review_url(review)).content.decode()
    assert 'id="booking-reschedule"' in page
    response = client.post(
        review_url(review, "reschedule"),
        {"starts_at": f"{day:%Y-%m-%d}T10:30", "location": "Room 4"},
    )

    assert response.status_code == 302
    review.refresh_from_db()
    assert review.sequence == before + 1
    assert review.location == "Room 4"
    zone = policy_zone(review_policy_get())
    assert zone.key == "America/New_York"
    assert review.starts_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") == f"{day} 10:30"
    assert len(invitations(review.incident)) > sent_before
    assert any("rescheduled" in text for text in texts(response))


def test_rescheduling_into_the_past_is_refused(client, booked_review):
    review = booked_review
    slot = review.starts_at

    response = client.post(review_url(review, "reschedule"), {"starts_at": "2001-01-01T10:00"})

    assert response.status_code == 302
    review.refresh_from_db()
    assert (review.starts_at, review.sequence) == (slot, 0)
    assert any("future" in text for text in texts(response))


def test_cancelling_needs_a_reason(client, booked_review):
    review = booked_review

    response = client.post(review_url(review, "cancel"), {"reason": "  "})

    review.refresh_from_db()
    assert review.status == ReviewStatus.BOOKED
    assert any("Say why" in text for text in texts(response))

    response = client.post(review_url(review, "cancel"), {"reason": "Merged into INC review."})

    review.refresh_from_db()
    assert review.status == ReviewStatus.CANCELLED
    cancels = [n for n in invitations(review.incident) if n.context.get("ics_method") == "CANCEL"]
    assert cancels
    page = client.get(review_url(review)).content.decode()
    assert 'id="booking-reschedule"' not in page
    assert 'id="booking-cancel"' not in page


def test_the_facilitator_can_be_someone_external(client, booked_review):
    review = booked_review

    response = client.post(
        review_url(review, "facilitator"),
        {"facilitator-name": "Fay External", "facilitator-email": "fay@partner.example"},
    )

    assert response.status_code == 302
    review.refresh_from_db()
    assert (review.facilitator_id, review.facilitator_email) == (None, "fay@partner.example")
    assert review.attendees.filter(
        email="fay@partner.example", reason=AttendeeReason.FACILITATOR
    ).exists()


def test_an_attendee_is_invited_and_uninvited(client, booked_review):
    review = booked_review

    client.post(review_url(review, "attendees/add"), {"attendee-email": "sam@example.com"})
    attendee = review.attendees.get(email="sam@example.com")
    assert attendee.removed_at is None
    client.post(review_url(review, "attendees/remove"), {"attendee": str(attendee.pk)})

    attendee.refresh_from_db()
    assert attendee.removed_at is not None


def test_a_viewer_cannot_reschedule(client, make_user, booked_review):
    review = booked_review
    viewer = make_user("Viewer", username="vera", email="vera@example.com")
    client.force_login(viewer)
    day = (timezone.now() + timedelta(days=10)).date()

    page = client.get(review_url(review))
    assert 'id="booking-reschedule"' not in page.content.decode()
    response = client.post(review_url(review, "reschedule"), {"starts_at": f"{day}T10:30"})

    review.refresh_from_db()
    assert review.sequence == 0
    assert response.status_code in (302, 403)
