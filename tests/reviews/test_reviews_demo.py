"""``manage.py reviews_demo``: the closed demo incident's review, booked, held, written and
published, with one action item done and one overdue, its invitations in the outbox and its
knowledge-base article; loaded once."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from icalendar import Calendar

from escalation.outbox import notification_list
from reviews.models import ActionItem, KnowledgeArticle, Review
from reviews.services.actions import action_item_is_overdue

pytestmark = pytest.mark.django_db

LOAD = {} if connection.vendor == "sqlite" else {"force": True}


def run(command: str, **options) -> str:
    out = io.StringIO()
    call_command(command, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def loaded() -> str:
    with override_settings(DEBUG=True):
        run("demo_data", **LOAD)
        return run("reviews_demo", **LOAD)


def test_the_closed_sev1_has_a_published_review_with_its_actions_and_article(loaded):
    assert "Reviews demo ready" in loaded
    review = Review.objects.select_related("incident").get()
    incident = review.incident
    assert incident.status == "closed" and incident.severity_id == 1
    assert review.status == "published"
    assert review.held_at and review.published_at
    assert review.incident.closed_at < review.held_at <= review.published_at
    assert review.lessons_learned and review.primary_cause
    assert review.attendees.filter(attended=True).count() == review.attendees.count() >= 2

    items = {item.status: item for item in ActionItem.objects.filter(incident=incident)}
    assert set(items) == {"done", "open"}
    assert items["done"].completed_at is not None
    assert action_item_is_overdue(items["open"])

    article = KnowledgeArticle.objects.get(review=review)
    assert set(article.services.all()) == set(incident.services.all())

    invitations = [n for n in notification_list(incident=incident) if n.channel == "email"]
    invitations = [n for n in invitations if "ics" in (n.context or {})]
    assert {n.recipient for n in invitations} == {a.email for a in review.attendees.all()}
    calendar = Calendar.from_ical(invitations[0].context["ics"])
    assert calendar["METHOD"] == "REQUEST"


def test_a_second_run_changes_nothing(loaded):
    with override_settings(DEBUG=True):
        assert "already there" in run("reviews_demo", **LOAD)
    assert Review.objects.count() == 1
    assert ActionItem.objects.count() == 2


def test_refused_with_debug_off_and_nothing_changed():
    with override_settings(DEBUG=False), pytest.raises(CommandError):
        run("reviews_demo")
    assert not Review.objects.exists()
