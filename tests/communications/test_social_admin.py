"""Social media posts in the admin: the list, editing a draft's text, the approve / send /
discard buttons and list actions (refusals as messages, nothing changed), read-only once sent,
and the incident page's panel with its buttons."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from communications.models import SocialPost, SocialPostState
from communications.services.components import component_create
from communications.services.social import social_post_approve
from communications.services.updates import (
    status_update_approve,
    status_update_create,
    status_update_publish,
)
from escalation.outbox import notification_list
from incidents.models import Source
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/communications/socialpost/"


def change_url(post) -> str:
    return f"/admin/communications/socialpost/{post.pk}/change/"


def step_url(post, step) -> str:
    return f"/admin/communications/socialpost/{post.pk}/{step}/"


def incident_url(incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def incident(communications_lead, business_liaison):
    service = ServiceFactory(slug="checkout", name="checkout-internal", public_name="Checkout")
    checkout = component_create(service=service, actor=None)
    incident = IncidentFactory(title="INTERNAL db-7 lag", severity=1, services=[service])
    update = status_update_create(
        incident=incident,
        actor=communications_lead,
        source=Source.ADMIN,
        public_title="Checkout is down",
        public_status="investigating",
        body="Customers cannot pay <script>alert(1)</script>.",
        components=[(checkout, "major_outage")],
    )
    update = status_update_approve(
        status_update=update, actor=business_liaison, source=Source.ADMIN
    )
    status_update_publish(status_update=update, actor=communications_lead, source=Source.ADMIN)
    return incident


@pytest.fixture
def post(incident):
    return SocialPost.objects.get(incident=incident)


def test_the_list_shows_drafts_first(communications_lead, business_liaison, incident, post):
    other = SocialPost.objects.create(
        incident=incident, body="Older, sent.", state=SocialPostState.SENT
    )
    response = browser(communications_lead).get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert incident.number in html
    assert html.index(f'value="{post.pk}"') < html.index(f'value="{other.pk}"')
    assert "Add social post" not in html


def test_edit_a_draft(communications_lead, post):
    client = browser(communications_lead)
    assert client.get(change_url(post)).status_code == 200
    response = client.post(change_url(post), {"body": "Checkout is down. https://status.test/"})
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.body == "Checkout is down. https://status.test/"
    assert post.history.first().history_user == communications_lead


def test_a_too_long_text_is_shown_again_with_the_error(communications_lead, post):
    before = post.body
    response = browser(communications_lead).post(change_url(post), {"body": "x" * 501})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    post.refresh_from_db()
    assert post.body == before


def test_buttons_follow_the_role_and_state(communications_lead, business_liaison, post):
    liaison_page = browser(business_liaison).get(change_url(post)).content.decode()
    assert f'action="{step_url(post, "approve")}"' in liaison_page
    assert f'action="{step_url(post, "send")}"' not in liaison_page
    lead_page = browser(communications_lead).get(change_url(post)).content.decode()
    assert f'action="{step_url(post, "approve")}"' not in lead_page
    assert f'action="{step_url(post, "discard")}"' in lead_page
    # Not approved yet: no send button.
    assert f'action="{step_url(post, "send")}"' not in lead_page


def test_approve_then_send_with_the_buttons(communications_lead, business_liaison, post):
    response = browser(business_liaison).post(step_url(post, "approve"), follow=True)
    assert any("approved" in m for m in messages_of(response))
    post.refresh_from_db()
    assert post.state == SocialPostState.APPROVED

    response = browser(communications_lead).post(step_url(post, "send"), follow=True)
    assert any("sent" in m for m in messages_of(response))
    post.refresh_from_db()
    assert post.state == SocialPostState.SENT
    [row] = notification_list(incident=post.incident)
    assert row.channel == "mastodon"

    # Sent: read-only, no more buttons, and the delivery state is shown.
    page = browser(communications_lead).get(change_url(post)).content.decode()
    assert 'name="body"' not in page
    assert "/send/" not in page and "/discard/" not in page
    assert "Pending" in page


def test_a_refused_step_is_a_message_and_changes_nothing(communications_lead, post):
    response = browser(communications_lead).post(step_url(post, "send"), follow=True)
    assert any(m.startswith("Not sent: This post is not approved") for m in messages_of(response))
    post.refresh_from_db()
    assert post.state == SocialPostState.DRAFT
    assert notification_list().count() == 0


def test_steps_only_by_post(business_liaison, post):
    assert browser(business_liaison).get(step_url(post, "approve")).status_code == 405


def test_list_actions_report_what_they_did(communications_lead, business_liaison, incident, post):
    other = SocialPost.objects.create(incident=incident, body="Second.")
    social_post_approve(post=post, actor=business_liaison, source=Source.ADMIN)
    response = browser(communications_lead).post(
        LIST,
        {"action": "send_selected", "_selected_action": [post.pk, other.pk]},
        follow=True,
    )
    messages = messages_of(response)
    assert "1 post(s) sent." in messages
    assert any(m.startswith(f"Not sent: {incident.number} post #{other.pk}") for m in messages)
    post.refresh_from_db()
    other.refresh_from_db()
    assert (post.state, other.state) == (SocialPostState.SENT, SocialPostState.DRAFT)


def test_the_incident_page_panel_with_buttons(business_liaison, incident, post):
    client = browser(business_liaison)
    html = client.get(incident_url(incident)).content.decode()
    start = html.index('id="panel-social-posts"')
    panel = html[start : start + 4000]
    assert "Checkout is down (Investigating)" in panel
    # The update's text is shown escaped, never as markup.
    assert "<script>alert(1)</script>" not in html
    assert f'action="{step_url(post, "approve")}"' in panel
    assert re.search(rf'name="next" value="{re.escape(incident_url(incident))}"', panel)

    response = client.post(step_url(post, "approve"), {"next": incident_url(incident)})
    assert response.status_code == 302
    assert response["Location"] == incident_url(incident)
    post.refresh_from_db()
    assert post.state == SocialPostState.APPROVED


def test_the_panel_does_not_redirect_elsewhere(business_liaison, post):
    response = browser(business_liaison).post(
        step_url(post, "approve"), {"next": "https://evil.example/"}
    )
    assert response["Location"] == change_url(post)


def test_the_panel_is_for_roles_that_read_posts(make_user, incident, post):
    nobody = make_user(username="nobody", is_staff=True)
    nobody.user_permissions.add(*Permission.objects.filter(codename="view_incident"))
    html = browser(nobody).get(incident_url(incident)).content.decode()
    assert 'id="panel-social-posts"' not in html
