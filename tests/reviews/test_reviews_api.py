"""The reviews API (/api/v1/reviews/): list filters, detail with KPIs, writing sections,
held, publish (refused when empty or without actions), read-only once published, permissions
and clear errors that change nothing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from reviews.models import ActionItem, ActionKind, Review, ReviewAttendee, ReviewStatus
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

TODAY = date(2026, 3, 16)
URL = "/api/v1/reviews/"


@pytest.fixture(autouse=True)
def _today():
    with time_machine.travel("2026-03-16 12:00Z", tick=False):
        yield


@pytest.fixture
def make_review(make_incident):
    def make(*, due=TODAY, status=ReviewStatus.BOOKED, services=(), **incident):
        incident = make_incident(status="closed", severity=2, services=services, **incident)
        return Review.objects.create(incident=incident, due_date=due, status=status)

    return make


@pytest.fixture
def review(make_review):
    review = make_review()
    ReviewAttendee.objects.create(
        review=review, name="Sam", email="sam@example.com", reason="service_owner"
    )
    return review


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_list_filters(api_as, viewer, make_review):
    checkout = ServiceFactory(slug="checkout")
    late = make_review(due=TODAY - timedelta(days=2), services=[checkout.slug])
    soon = make_review(due=TODAY + timedelta(days=3))
    held = make_review(due=TODAY - timedelta(days=5), status=ReviewStatus.HELD)
    api = api_as(viewer)

    assert ids(api.get(URL)) == [held.pk, late.pk, soon.pk]
    assert ids(api.get(URL, {"status": "held"})) == [held.pk]
    assert ids(api.get(URL, {"overdue": "true"})) == [late.pk]
    assert ids(api.get(URL, {"overdue": "false"})) == [held.pk, soon.pk]
    assert ids(api.get(URL, {"service": "checkout"})) == [late.pk]
    assert ids(api.get(URL, {"incident": soon.incident.number})) == [soon.pk]
    assert ids(api.get(URL, {"due_before": str(TODAY)})) == [held.pk, late.pk]
    assert ids(api.get(URL, {"due_after": str(TODAY)})) == [soon.pk]
    late_row = api.get(URL, {"overdue": "true"}).json()["results"][0]
    assert late_row["overdue"] is True and late_row["incident"] == late.incident.number


@pytest.mark.parametrize(
    "query",
    [
        {"status": "lost"},
        {"overdue": "maybe"},
        {"due_before": "16/03/2026"},
        {"incident": "INC-nope"},
        {"service": "no spaces"},
    ],
)
def test_bad_filters_are_a_clear_400(api_as, viewer, query):
    response = api_as(viewer).get(URL, query)

    assert response.status_code == 400
    assert next(iter(query)) in response.json()["errors"]


def test_list_query_count_does_not_grow(api_as, viewer, make_review):
    api = api_as(viewer)
    make_review()
    with CaptureQueriesContext(connection) as one:
        api.get(URL)
    for _ in range(3):
        make_review()
    with CaptureQueriesContext(connection) as four:
        api.get(URL)
    assert len(four) == len(one)


def test_detail_has_sections_attendees_and_kpis(api_as, viewer, review):
    body = api_as(viewer).get(f"{URL}{review.pk}/").json()

    assert body["status"] == "booked"
    assert set(body["sections"]) >= {"overview", "went_well", "primary_cause", "lessons_learned"}
    assert [a["email"] for a in body["attendees"]] == ["sam@example.com"]
    assert [k["key"] for k in body["kpis"]] == ["detect", "acknowledge", "mitigate", "resolve"]
    assert body["kpis"][1]["target_seconds"] == 3600  # Sev 2's response target


def test_write_hold_and_publish(api_as, incident_manager, review):
    api = api_as(incident_manager)
    attendee = review.attendees.get()

    response = api.post(f"{URL}{review.pk}/publish/", format="json")
    assert response.status_code == 409 and "mark it held first" in response.json()["detail"]

    response = api.post(
        f"{URL}{review.pk}/held/",
        {
            "held_at": "2026-03-16T12:00:00Z",
            "attendance": [{"attendee": attendee.pk, "attended": True}],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "held"
    assert response.json()["attendees"][0]["attended"] is True

    response = api.post(f"{URL}{review.pk}/publish/", format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "guard_failed"
    assert "The review is empty" in response.json()["detail"]
    assert "action_items" in response.json()["missing_fields"]

    response = api.patch(
        f"{URL}{review.pk}/", {"primary_cause": "A lowered pool limit."}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["sections"]["primary_cause"] == "A lowered pool limit."
    response = api.post(f"{URL}{review.pk}/publish/", format="json")
    assert response.status_code == 400
    assert response.json()["missing_fields"] == ["action_items"]

    ActionItem.objects.create(
        incident=review.incident, review=review, kind=ActionKind.LONG_TERM,
        title="Alert on saturation", owner=incident_manager, due_date=TODAY + timedelta(days=9),
    )  # fmt: skip
    response = api.post(f"{URL}{review.pk}/publish/", format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "published"
    assert response.json()["published_by"]["id"] == incident_manager.pk

    response = api.patch(f"{URL}{review.pk}/", {"primary_cause": "Rewritten."}, format="json")
    assert response.status_code == 409
    assert "published (read-only)" in response.json()["detail"]
    review.refresh_from_db()
    assert review.primary_cause == "A lowered pool limit."


@pytest.mark.parametrize(
    "body, field",
    [
        ({"nonsense": "x"}, "nonsense"),
        ({"overview": None}, "overview"),
        ({"overview": "x" * 20_001}, "overview"),
        ({}, "non_field_errors"),
    ],
)
def test_bad_sections_are_a_400_and_change_nothing(api_as, incident_manager, review, body, field):
    response = api_as(incident_manager).patch(f"{URL}{review.pk}/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    review.refresh_from_db()
    assert review.overview == ""


def test_cause_category_is_written_read_and_cleared(api_as, incident_manager, review):
    api = api_as(incident_manager)
    assert api.get(f"{URL}{review.pk}/").json()["cause_category"] == ""

    response = api.patch(
        f"{URL}{review.pk}/",
        {"primary_cause": "A lowered pool limit.", "cause_category": "configuration"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["cause_category"] == "configuration"
    assert body["cause_category_label"] == "Configuration"
    assert "cause_category" not in body["sections"]
    review.refresh_from_db()
    assert review.cause_category == "configuration"
    assert review.primary_cause == "A lowered pool limit."
    listed = api.get(URL).json()["results"][0]
    assert listed["cause_category"] == "configuration"

    cleared = api.patch(f"{URL}{review.pk}/", {"cause_category": ""}, format="json")
    assert cleared.status_code == 200
    assert cleared.json()["cause_category_label"] == "Not categorised"
    review.refresh_from_db()
    assert review.cause_category == ""


@pytest.mark.parametrize("value", ["bad-luck", "Configuration", None, 3])
def test_an_unknown_cause_category_is_a_400_and_changes_nothing(
    api_as, incident_manager, review, value
):
    review.cause_category = "software"
    review.save()

    response = api_as(incident_manager).patch(
        f"{URL}{review.pk}/",
        {"overview": "Written with it.", "cause_category": value},
        format="json",
    )

    assert response.status_code == 400
    assert "cause_category" in response.json()["errors"]
    review.refresh_from_db()
    assert review.cause_category == "software" and review.overview == ""


def test_cause_category_is_read_only_once_published(api_as, incident_manager, review):
    review.status = ReviewStatus.PUBLISHED
    review.cause_category = "capacity"
    review.save()

    response = api_as(incident_manager).patch(
        f"{URL}{review.pk}/", {"cause_category": "software"}, format="json"
    )

    assert response.status_code == 409
    review.refresh_from_db()
    assert review.cause_category == "capacity"


def test_held_refuses_the_future_and_strangers(api_as, incident_manager, review, make_review):
    api = api_as(incident_manager)
    other = make_review()
    stranger = ReviewAttendee.objects.create(
        review=other, name="X", email="x@example.com", reason="added"
    )

    future = api.post(f"{URL}{review.pk}/held/", {"held_at": "2026-03-20T10:00:00Z"}, format="json")
    strange = api.post(
        f"{URL}{review.pk}/held/",
        {"attendance": [{"attendee": stranger.pk, "attended": True}]},
        format="json",
    )

    assert future.status_code == 400 and "held_at" in future.json()["errors"]
    assert strange.status_code == 400 and "attendance" in strange.json()["errors"]
    review.refresh_from_db()
    assert review.status == ReviewStatus.BOOKED and review.held_at is None


def test_permissions(api_as, viewer, review, make_user):
    api = api_as(viewer)

    assert api.get(f"{URL}{review.pk}/").status_code == 200
    assert api.patch(f"{URL}{review.pk}/", {"overview": "x"}, format="json").status_code == 403
    assert api.post(f"{URL}{review.pk}/held/", {}, format="json").status_code == 403
    assert api.post(f"{URL}{review.pk}/publish/", format="json").status_code == 403
    assert api_as(make_user()).get(URL).status_code == 403
    review.refresh_from_db()
    assert review.overview == "" and review.status == ReviewStatus.BOOKED
    assert api.get(f"{URL}999999/").status_code == 404


def test_book_reschedule_and_cancel_through_the_booking_services(
    api_as, incident_manager, make_incident
):
    incident = make_incident(status="closed", severity=2)
    api = api_as(incident_manager)

    first = api.post(URL, {"incident": incident.number}, format="json")
    again = api.post(URL, {"incident": incident.number}, format="json")

    assert first.status_code == 201, first.content
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    review = Review.objects.get(incident=incident)
    sequence = review.sequence

    past = api.post(
        f"{URL}{review.pk}/reschedule/", {"starts_at": "2026-03-01T10:00:00Z"}, format="json"
    )
    assert past.status_code == 400
    moved = api.post(
        f"{URL}{review.pk}/reschedule/",
        {"starts_at": "2026-03-18T10:00:00Z", "location": "Room 4"},
        format="json",
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["location"] == "Room 4"
    review.refresh_from_db()
    assert review.sequence == sequence + 1

    assert api.post(f"{URL}{review.pk}/cancel/", {}, format="json").status_code == 400
    cancelled = api.post(f"{URL}{review.pk}/cancel/", {"reason": "Merged."}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.post(f"{URL}{review.pk}/cancel/", {"reason": "x"}, format="json")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # idempotent
    edit = api.patch(f"{URL}{review.pk}/", {"overview": "x"}, format="json")
    assert edit.status_code == 409


def test_booking_refusals(api_as, incident_manager, viewer, make_incident):
    cancelled = make_incident(status="cancelled")
    closed = make_incident(status="closed")

    assert (
        api_as(incident_manager).post(URL, {"incident": cancelled.number}, format="json")
    ).status_code == 400
    assert (
        api_as(incident_manager).post(URL, {"incident": "INC-2026-0101-999"}, format="json")
    ).status_code == 400
    assert api_as(viewer).post(URL, {"incident": closed.number}, format="json").status_code == 403
    assert not Review.objects.exists()
