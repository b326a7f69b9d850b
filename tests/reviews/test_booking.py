"""Booking post-incident reviews: on closure of a severity the policy requires, or on demand;
its due date, facilitator, attendees and proposed slot; rescheduling, cancelling, changing the
facilitator and the attendees; what is refused; the overdue sweep; the close guard switch."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from escalation.models import Notification
from incidents.errors import ActionForbidden, GuardFailed, InvalidInput, TransitionNotAllowed
from incidents.models import Kind, Source
from reviews.models import AttendeeReason, Review, ReviewPolicy, ReviewStatus
from reviews.services.attendees import (
    review_attendee_add,
    review_attendee_remove,
    review_facilitator_set,
)
from reviews.services.booking import review_book, review_cancel, review_reschedule
from reviews.services.overdue import reviews_overdue_sweep
from reviews.tasks import review_overdue_sweep_task
from tests.factories import IncidentFactory
from tests.reviews import booking_fixtures
from tests.reviews.booking_fixtures import CLOSED_AT, close, deliver, make_incident

team = booking_fixtures.team
booked = booking_fixtures.booked
us_holidays = booking_fixtures.us_holidays

pytestmark = pytest.mark.django_db

SOON = CLOSED_AT + timedelta(hours=1)


def invite_rows(review):
    return Notification.objects.filter(idempotency_key__startswith=f"review-invite:{review.uid}:")


def test_closing_a_sev1_books_its_review(booked, team):
    review = booked

    assert review.status == ReviewStatus.BOOKED and review.required
    assert review.due_date == date(2025, 6, 12)
    # Two business days after closure, at the start of the working day (UTC policy).
    assert review.starts_at == datetime(2025, 6, 9, 9, 0, tzinfo=UTC)
    assert review.ends_at == datetime(2025, 6, 9, 10, 30, tzinfo=UTC)
    assert review.facilitator == team["im"]
    reasons = {a.email: a.reason for a in review.attendees.all()}
    assert reasons == {
        "ines@example.com": AttendeeReason.FACILITATOR,
        "theo@example.com": AttendeeReason.RESPONSE_TEAM,
        "olga@example.com": AttendeeReason.SERVICE_OWNER,
        "it-manager@example.com": AttendeeReason.MANAGEMENT,
    }
    assert invite_rows(review).count() == 4
    entry = review.incident.timeline.get(data__review_event="booked")
    assert "due Thu 12 Jun 2025" in entry.message


def test_a_severity_the_policy_does_not_require_books_nothing(team):
    incident = close(make_incident(team, severity=3))

    assert not Review.objects.filter(incident=incident).exists()


def test_the_policy_decides_which_severities_require_a_review(team):
    ReviewPolicy.objects.filter(pk=1).update(required_severities=[3])

    incident = close(make_incident(team, severity=3))

    assert Review.objects.get(incident=incident).required


def test_booking_twice_returns_the_same_review_and_sends_nothing_more(booked, team):
    with time_machine.travel(SOON, tick=False):
        again = review_book(incident=booked.incident, actor=team["im"], source=Source.API)

    assert again.pk == booked.pk
    assert invite_rows(booked).count() == 4


def test_on_demand_before_closing_counts_from_the_booking(team):
    incident = make_incident(team, severity=3, status="investigating")
    with time_machine.travel(SOON, tick=False):
        review = review_book(incident=incident, actor=team["im"], source=Source.ADMIN)

    assert not review.required
    assert review.due_date == date(2025, 6, 12)
    assert review.facilitator == team["im"]
    assert invite_rows(review).count() == 4


def test_a_cancelled_incident_is_refused(team):
    with time_machine.travel(CLOSED_AT, tick=False):
        incident = IncidentFactory(status="cancelled", severity=1)
        with pytest.raises(InvalidInput, match="cancelled"):
            review_book(incident=incident, actor=team["im"], source=Source.API)

    assert not Review.objects.filter(incident=incident).exists()


def test_booking_needs_the_permission(team, make_user):
    incident = make_incident(team)
    viewer = make_user("Viewer", username="vera")

    with pytest.raises(ActionForbidden):
        review_book(incident=incident, actor=viewer, source=Source.API)
    assert not Review.objects.filter(incident=incident).exists()


def test_the_proposed_slot_avoids_another_booked_review(booked, team):
    other = close(make_incident(team, title="Search down"))
    second = Review.objects.get(incident=other)

    assert second.starts_at == booked.ends_at  # 10:30, the next free slot that day
    assert second.starts_at.date() == booked.starts_at.date()


def test_an_old_closure_is_due_counted_from_today(team):
    incident = close(make_incident(team, severity=3))
    with time_machine.travel(datetime(2025, 7, 1, 12, 0, tzinfo=UTC), tick=False):
        review = review_book(incident=incident, actor=team["im"], source=Source.ADMIN)

    assert review.due_date == date(2025, 7, 9)  # Jul 4 is a holiday
    assert review.starts_at > datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


def test_reschedule_increments_the_sequence_and_refuses_bad_input(booked, team):
    deliver()
    with time_machine.travel(SOON, tick=False):
        with pytest.raises(InvalidInput):
            review_reschedule(
                review=booked,
                actor=team["im"],
                source=Source.API,
                starts_at=datetime(2025, 6, 1, 9, 0, tzinfo=UTC),
            )
        with pytest.raises(InvalidInput):
            review_reschedule(
                review=booked,
                actor=team["im"],
                source=Source.API,
                starts_at=datetime(2025, 6, 10, 9, 0),  # naive
            )
        booked.refresh_from_db()
        assert booked.sequence == 0
        moved = review_reschedule(
            review=booked,
            actor=team["im"],
            source=Source.API,
            starts_at=datetime(2025, 6, 10, 9, 0, tzinfo=UTC),
        )
        again = review_reschedule(
            review=booked,
            actor=team["im"],
            source=Source.API,
            starts_at=datetime(2025, 6, 10, 9, 0, tzinfo=UTC),
        )

    assert moved.sequence == again.sequence == 1
    assert invite_rows(booked).count() == 8
    assert {a.invited_sequence for a in booked.attendees.all()} == {1}


def test_cancel_needs_a_reason_and_a_cancelled_review_can_be_booked_again(booked, team):
    with time_machine.travel(SOON, tick=False):
        with pytest.raises(InvalidInput):
            review_cancel(review=booked, actor=team["im"], source=Source.API, reason=" ")
        cancelled = review_cancel(
            review=booked, actor=team["im"], source=Source.API, reason="Duplicate."
        )
        with pytest.raises(TransitionNotAllowed):
            review_reschedule(
                review=cancelled,
                actor=team["im"],
                source=Source.API,
                starts_at=datetime(2025, 6, 10, 9, 0, tzinfo=UTC),
            )
        rebooked = review_book(incident=booked.incident, actor=team["im"], source=Source.API)

    assert cancelled.status == ReviewStatus.CANCELLED
    assert rebooked.pk == booked.pk and rebooked.status == ReviewStatus.BOOKED
    assert rebooked.sequence == 2  # cancelled at 1, booked again at 2
    assert invite_rows(booked).filter(idempotency_key__endswith=":1:CANCEL").count() == 4
    assert invite_rows(booked).filter(idempotency_key__endswith=":2:REQUEST").count() == 4


def test_an_external_facilitator_by_email(booked, team):
    with time_machine.travel(SOON, tick=False):
        with pytest.raises(InvalidInput):
            review_facilitator_set(
                review=booked, actor=team["im"], source=Source.API, email="not-an-address"
            )
        review = review_facilitator_set(
            review=booked,
            actor=team["im"],
            source=Source.API,
            email="coach@facilitators.example",
            name="Casey Coach",
        )

    assert review.facilitator is None
    assert review.facilitator_email == "coach@facilitators.example"
    reasons = {a.email: a.reason for a in review.attendees.all()}
    assert reasons["coach@facilitators.example"] == AttendeeReason.FACILITATOR
    assert reasons["ines@example.com"] == AttendeeReason.ADDED
    messages = deliver()
    coach = [m for m in messages if m.to == ["coach@facilitators.example"]]
    assert len(coach) == 1
    cal = booking_fixtures.calendar_of(coach[0])[0]
    attendee = {str(a): a.params for a in cal.walk("VEVENT")[0]["ATTENDEE"]}
    assert attendee["mailto:coach@facilitators.example"]["ROLE"] == "CHAIR"


def test_attendees_added_and_removed_get_their_invitation_and_cancellation(booked, team):
    deliver()
    with time_machine.travel(SOON, tick=False):
        added = review_attendee_add(
            review=booked, actor=team["im"], source=Source.API, email="cto@example.com"
        )
        review_attendee_add(
            review=booked, actor=team["im"], source=Source.API, email="cto@example.com"
        )
        review_attendee_remove(review=booked, actor=team["im"], source=Source.API, attendee=added)
        facilitator = booked.attendees.get(reason=AttendeeReason.FACILITATOR)
        with pytest.raises(InvalidInput):
            review_attendee_remove(
                review=booked, actor=team["im"], source=Source.API, attendee=facilitator
            )
        # Invited back: a new invitation at the next SEQUENCE (the old key was used).
        review_attendee_add(
            review=booked, actor=team["im"], source=Source.API, email="cto@example.com"
        )

    messages = [m for m in deliver() if m.to == ["cto@example.com"]]
    methods = [booking_fixtures.calendar_of(m)[0]["METHOD"] for m in messages]
    assert methods == ["REQUEST", "CANCEL", "REQUEST"]
    sequences = [
        int(booking_fixtures.calendar_of(m)[0].walk("VEVENT")[0]["SEQUENCE"]) for m in messages
    ]
    assert sequences == [0, 0, 1]


def test_overdue_is_flagged_once_with_one_reminder(booked, team):
    # Due Thu 12 June: still fine during that day, overdue once it has ended.
    with time_machine.travel(datetime(2025, 6, 12, 23, 0, tzinfo=UTC), tick=False):
        assert review_overdue_sweep_task.apply().get() == 0
    with time_machine.travel(datetime(2025, 6, 13, 0, 1, tzinfo=UTC), tick=False):
        assert review_overdue_sweep_task.apply().get() == 1
        assert review_overdue_sweep_task.apply().get() == 0

    booked.refresh_from_db()
    assert booked.overdue_at == datetime(2025, 6, 13, 0, 1, tzinfo=UTC)
    assert booked.incident.timeline.filter(data__review_event="overdue").count() == 1
    reminders = [m for m in deliver() if m.subject.startswith("Overdue:")]
    assert [m.to for m in reminders] == [["ines@example.com"]]


def test_a_held_or_cancelled_review_is_never_overdue(booked, team):
    with time_machine.travel(SOON, tick=False):
        review_cancel(review=booked, actor=team["im"], source=Source.API, reason="Merged.")
    with time_machine.travel(datetime(2025, 7, 1, tzinfo=UTC), tick=False):
        assert reviews_overdue_sweep() == 0


def test_the_admin_index_shows_overdue_reviews(booked, client, team):
    client.force_login(team["im"])
    assert "Overdue reviews" not in client.get("/admin/").content.decode()

    with time_machine.travel(datetime(2025, 6, 13, 0, 1, tzinfo=UTC), tick=False):
        reviews_overdue_sweep()
    page = client.get("/admin/").content.decode()

    assert "Overdue reviews" in page
    assert f'data-overdue-review="{booked.pk}"' in page
    assert booked.incident.number in page


def test_the_close_guard_switch(team, api_as):
    incident = make_incident(team)
    ReviewPolicy.objects.filter(pk=1).update(close_guard_severities=[1])

    with pytest.raises(GuardFailed, match="review"):
        close(incident, actor=team["im"])
    incident.refresh_from_db()
    assert incident.status == "resolved"

    with time_machine.travel(SOON, tick=False):
        review_book(incident=incident, actor=team["im"], source=Source.API)
    closed = close(incident, actor=team["im"])
    assert closed.status == "closed"
    assert Review.objects.get(incident=incident).required is False  # booked on demand, kept


def test_the_close_guard_is_off_by_default(team):
    assert close(make_incident(team), actor=team["im"]).status == "closed"


def test_the_close_guard_answers_400_through_the_api(team, api_as):
    incident = make_incident(team)
    ReviewPolicy.objects.filter(pk=1).update(close_guard_severities=[1])
    from incidents.services import incident_update

    incident_update(
        incident=incident,
        actor=None,
        source=Source.SYSTEM,
        root_cause="A bad release.",
        business_impact="Checkout down.",
    )
    response = api_as(team["im"]).post(
        f"/api/v1/incidents/{incident.number}/close/", {}, format="json"
    )

    assert response.status_code == 400
    assert "post-incident review" in str(response.json())
    assert not incident.timeline.filter(kind=Kind.STATUS, data__action="close").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_overdue_sweeps_flag_and_remind_once(team):
    reviews = [
        Review.objects.get(incident=close(make_incident(team, title=f"Outage {n}")))
        for n in range(3)
    ]
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def sweep() -> None:
        try:
            barrier.wait()
            counts.append(reviews_overdue_sweep(now=datetime(2025, 6, 20, tzinfo=UTC)))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(counts) == 3
    for review in reviews:
        assert review.incident.timeline.filter(data__review_event="overdue").count() == 1
        assert (
            Notification.objects.filter(idempotency_key=f"review-overdue:{review.uid}").count() == 1
        )


def test_the_review_list_flags_and_filters_overdue_reviews(booked, client, team):
    client.force_login(team["im"])
    url = "/admin/reviews/review/"
    with time_machine.travel(datetime(2025, 6, 13, 0, 1, tzinfo=UTC), tick=False):
        before = client.get(url).content.decode()
        assert "overdue</strong>" not in before
        reviews_overdue_sweep()
        page = client.get(url).content.decode()
        assert 'class="vigil-overdue">overdue</strong>' in page
        assert booked.incident.number in client.get(url + "?overdue=yes").content.decode()
        assert booked.incident.number not in client.get(url + "?overdue=no").content.decode()
