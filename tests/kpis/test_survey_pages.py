"""The survey's public pages and its admin: a click records the score at once, another click
through the same e-mail replaces it (one row, never two), the comment page (CSRF-protected)
finalises the answer, and a used, tampered or expired link or a score outside 1-5 gets a clear
4xx and changes nothing; the invitations' read-only list and the incident page's panel."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from escalation.models import Notification
from incidents import ratelimit
from kpis.models import KpiMonth, SurveyInvitation
from tests.communications.fanout_fixtures import components, contact, page
from tests.kpis.test_survey import RATE_LINK, incident_on, resolve

__all__ = ["components", "page"]

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
COMMENT_ACTION = re.compile(r'action="([^"]*/survey/[^"/]+/comment/)"')


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings):
    """Each test counts its own requests, in process memory, emptied around it."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "survey-tests",
        }
    }
    ratelimit._stores.clear()
    yield
    ratelimit._stores.clear()


@pytest.fixture
def invited(components):
    """A resolved customer-facing incident (at T0) whose one contact was invited; returns
    the invitation and the path of each rating link, by score."""
    contact("buyer@acme.example", services=[components["checkout"].service])
    with time_machine.travel(T0, tick=False):
        resolve(incident_on(components["checkout"].service))
    row = Notification.objects.get(idempotency_key__startswith="survey:")
    links = {int(n): f"/survey/{token}/rate/{n}/" for token, n in RATE_LINK.findall(row.body)}
    return SurveyInvitation.objects.get(), links


def at(days: float = 1):
    return time_machine.travel(T0 + timedelta(days=days), tick=False)


def comment_path(response) -> str:
    return COMMENT_ACTION.search(response.content.decode()).group(1)


def snapshot(invitation: SurveyInvitation) -> tuple:
    invitation.refresh_from_db()
    return (
        invitation.rating,
        invitation.rated_at,
        invitation.comment,
        invitation.finalized_at,
        invitation.token_version,
    )


# --- rating ------------------------------------------------------------------------------------


def test_one_click_records_the_score_and_shows_it_with_the_comment_form(client, invited):
    invitation, links = invited
    with at(1):
        response = client.get(links[4])

    assert response.status_code == 200
    body = response.content.decode()
    assert "4 out of 5 – Satisfied" in body
    assert "Internal" not in body and "db-7" not in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    invitation.refresh_from_db()
    assert invitation.rating == 4
    assert invitation.rated_at == T0 + timedelta(days=1)
    assert invitation.finalized_at is None


def test_another_score_through_the_same_email_replaces_it_never_two_rows(client, invited):
    invitation, links = invited
    with at(1):
        client.get(links[5])
    with at(2):
        for n in (1, 2, 3):
            assert client.get(links[n]).status_code == 200

    assert SurveyInvitation.objects.count() == 1
    invitation.refresh_from_db()
    assert invitation.rating == 3
    assert invitation.rated_at == T0 + timedelta(days=2)


def test_the_same_score_again_changes_nothing(client, invited):
    invitation, links = invited
    with at(1):
        client.get(links[2])
    with at(2):
        client.get(links[2])
    invitation.refresh_from_db()
    assert invitation.rated_at == T0 + timedelta(days=1)


def test_a_head_request_records_nothing(client, invited):
    invitation, links = invited
    with at(1):
        assert client.head(links[1]).status_code == 200
    assert snapshot(invitation)[0] is None


@pytest.mark.parametrize("score", ["7", "0", "-1", "abc"])
def test_a_score_outside_1_to_5_is_a_400_and_changes_nothing(client, invited, score):
    invitation, links = invited
    with at(1):
        client.get(links[3])
        before = snapshot(invitation)
        response = client.get(links[3].replace("/rate/3/", f"/rate/{score}/"))
    assert response.status_code == 400
    assert "from 1 to 5" in response.content.decode()
    assert snapshot(invitation) == before


def test_a_tampered_link_is_a_400_and_changes_nothing(client, invited):
    invitation, links = invited
    token = links[4].split("/")[2]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    with at(1):
        response = client.get(f"/survey/{tampered}/rate/4/")
    assert response.status_code == 400
    assert "This link does not work" in response.content.decode()
    assert snapshot(invitation)[0] is None


def test_a_comment_link_is_not_a_rating_link(client, invited):
    invitation, links = invited
    with at(1):
        comment = comment_path(client.get(links[2]))
        token = comment.split("/")[-3]
        response = client.get(f"/survey/{token}/rate/5/")
    assert response.status_code == 400
    assert snapshot(invitation)[0] == 2


def test_an_expired_link_is_a_410_and_changes_nothing(client, invited):
    invitation, links = invited
    with at(1):
        client.get(links[4])
        comment = comment_path(client.get(links[4]))
    before = snapshot(invitation)
    with time_machine.travel(invitation.expires_at, tick=False):
        rated = client.get(links[1])
        commented = client.post(comment, {"rating": "1", "comment": "late"})
    assert rated.status_code == 410
    assert "This survey has closed" in rated.content.decode()
    assert commented.status_code == 410
    assert snapshot(invitation) == before


# --- the comment page --------------------------------------------------------------------------


def test_the_comment_page_finalises_and_every_link_is_then_used(client, invited):
    invitation, links = invited
    with at(1):
        comment = comment_path(client.get(links[2]))
    with at(2):
        response = client.post(
            comment, {"rating": "3", "comment": "  Slow updates <b>but</b> fixed.\r\nThanks  "}
        )
    assert response.status_code == 200
    assert "3 out of 5" in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.rating == 3
    assert invitation.comment == "Slow updates <b>but</b> fixed.\nThanks"
    assert invitation.finalized_at == T0 + timedelta(days=2)
    assert invitation.rated_at == T0 + timedelta(days=2)
    assert invitation.token_version == 2

    before = snapshot(invitation)
    with at(3):
        again_rate = client.get(links[5])
        again_comment = client.post(comment, {"rating": "5", "comment": "changed"})
        again_form = client.get(comment)
    for response in (again_rate, again_comment, again_form):
        assert response.status_code == 410
        assert "You have already answered" in response.content.decode()
    assert snapshot(invitation) == before
    assert SurveyInvitation.objects.count() == 1


def test_the_comment_page_shows_the_comment_as_plain_text_in_the_admin(client, invited, superuser):
    invitation, links = invited
    with at(1):
        comment = comment_path(client.get(links[1]))
        client.post(comment, {"rating": "1", "comment": "<script>alert(1)</script>"})
    client.force_login(superuser)
    response = client.get(reverse("admin:kpis_surveyinvitation_change", args=[invitation.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)</script>" not in body


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rating": "", "comment": "no score"}, "rating"),
        ({"rating": "4", "comment": "x" * 2001}, "comment"),
    ],
)
def test_a_bad_comment_page_is_a_400_with_the_form_and_changes_nothing(
    client, invited, data, field
):
    invitation, links = invited
    with at(1):
        comment = comment_path(client.get(links[2]))
        before = snapshot(invitation)
        response = client.post(comment, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert f'id="{field}-error"' in body
    assert snapshot(invitation) == before


def test_the_comment_post_needs_the_csrf_token(invited):
    invitation, links = invited
    browser = Client(enforce_csrf_checks=True)
    with at(1):
        page_ = browser.get(links[4])
        comment = comment_path(page_)
        refused = browser.post(comment, {"rating": "4", "comment": "forged"})
        assert refused.status_code == 403
        assert snapshot(invitation)[3] is None
        token = re.search(
            r'name="csrfmiddlewaretoken" value="([^"]+)"', page_.content.decode()
        ).group(1)
        accepted = browser.post(
            comment, {"rating": "4", "comment": "fine", "csrfmiddlewaretoken": token}
        )
    assert accepted.status_code == 200
    assert snapshot(invitation)[2:4] == ("fine", T0 + timedelta(days=1))


def test_too_many_requests_from_one_client_are_refused_and_change_nothing(
    client, invited, settings
):
    settings.VIGIL_SURVEY_IP_RATE = "3/hour"
    invitation, links = invited
    with at(1):
        for n in (1, 2, 3):
            assert client.get(links[n]).status_code == 200
        response = client.get(links[5])
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert snapshot(invitation)[0] == 3


def test_the_rating_page_costs_a_bounded_number_of_queries(
    client, invited, django_assert_max_num_queries
):
    _, links = invited
    with at(1), django_assert_max_num_queries(10):
        assert client.get(links[4]).status_code == 200


def test_the_pages_fit_a_phone(client, invited):
    _, links = invited
    with at(1):
        body = client.get(links[4]).content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    assert "@media (max-width: 30rem)" in body


# --- the admin ---------------------------------------------------------------------------------


def test_the_invitation_list_is_read_only(client, invited, superuser):
    invitation, links = invited
    with at(1):
        client.get(links[5])
    client.force_login(superuser)
    changelist = reverse("admin:kpis_surveyinvitation_changelist")
    response = client.get(changelist)
    assert response.status_code == 200
    body = response.content.decode()
    assert "buyer@acme.example" in body
    assert invitation.incident.number in body
    assert client.get(reverse("admin:kpis_surveyinvitation_add")).status_code == 403
    assert (
        client.get(reverse("admin:kpis_surveyinvitation_delete", args=[invitation.pk])).status_code
        == 403
    )
    for query in ("rating__exact=5", "answer=clicked", "answer=final", "month=2026-11"):
        assert client.get(f"{changelist}?{query}").status_code == 200


def test_the_month_filter_keeps_the_incidents_detected_that_month(client, invited, superuser):
    client.force_login(superuser)
    changelist = reverse("admin:kpis_surveyinvitation_changelist")
    assert "buyer@acme.example" in client.get(f"{changelist}?month=2026-11").content.decode()
    assert "buyer@acme.example" not in client.get(f"{changelist}?month=2026-10").content.decode()


def test_the_incident_page_shows_the_survey_results_against_the_target(
    client, invited, superuser, components
):
    invitation, links = invited
    contact("second@acme.example", services=[components["checkout"].service])
    # A second contact invited to the same incident.
    SurveyInvitation.objects.create(
        incident=invitation.incident,
        email="second@acme.example",
        sent_at=T0,
        expires_at=T0 + timedelta(days=14),
        rating=3,
        rated_at=T0,
    )
    with at(1):
        client.get(links[4])
        SurveyInvitation.objects.create(
            incident=invitation.incident,
            email="third@acme.example",
            sent_at=T0,
            expires_at=T0 + timedelta(days=14),
        )
    client.force_login(superuser)
    response = client.get(reverse("admin:incidents_incident_change", args=[invitation.incident_id]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="panel-survey"' in body
    assert 'data-invited="3"' in body
    assert 'data-answered="2"' in body
    assert 'data-mean="3.50"' in body
    assert "target 4.0" in body
    assert 'data-met="0"' in body


def test_a_rating_and_a_finalised_answer_mark_the_incidents_month_for_recomputation(
    client, invited
):
    _, links = invited
    stored, _ = KpiMonth.objects.update_or_create(
        month=date(2026, 11, 1), defaults={"stale": False}
    )
    other, _ = KpiMonth.objects.update_or_create(month=date(2026, 10, 1), defaults={"stale": False})
    with at(1):
        comment = comment_path(client.get(links[4]))
    stored.refresh_from_db()
    assert stored.stale is True

    KpiMonth.objects.filter(pk=stored.pk).update(stale=False)
    with at(1):
        client.post(comment, {"rating": "4", "comment": "ok"})
    stored.refresh_from_db()
    other.refresh_from_db()
    assert stored.stale is True
    assert other.stale is False
