"""Social media posts through the staff API: list an incident's posts, edit, approve, send,
discard; roles (403), states (409), bad text (400), nothing changed by a refusal."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from communications.models import SocialPost, SocialPostState
from communications.services.components import component_create
from communications.services.updates import (
    status_update_approve,
    status_update_create,
    status_update_publish,
)
from escalation.outbox import notification_list
from incidents.models import Source
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def incident(communications_lead, business_liaison):
    service = ServiceFactory(slug="checkout", name="checkout-internal", public_name="Checkout")
    checkout = component_create(service=service, actor=None)
    incident = IncidentFactory(title="INTERNAL title", severity=1, services=[service])
    for title in ("Checkout is down", "Fix deployed"):
        update = status_update_create(
            incident=incident,
            actor=communications_lead,
            source=Source.ADMIN,
            public_title=title,
            public_status="investigating",
            body="Customers cannot pay.",
            components=[(checkout, "major_outage")],
        )
        update = status_update_approve(
            status_update=update, actor=business_liaison, source=Source.ADMIN
        )
        status_update_publish(status_update=update, actor=communications_lead, source=Source.ADMIN)
    return incident


@pytest.fixture
def post(incident):
    return SocialPost.objects.filter(incident=incident).order_by("pk").first()


def url(incident, *parts) -> str:
    tail = "".join(f"{part}/" for part in parts)
    return f"/api/v1/incidents/{incident.number}/social-posts/{tail}"


def test_list_the_incidents_posts(api_as, viewer, incident, django_assert_num_queries):
    api = api_as(viewer)
    with django_assert_num_queries(5):
        response = api.get(url(incident))
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    assert [row["body"].split(" (")[0] for row in rows] == ["Checkout is down", "Fix deployed"]
    first = rows[0]
    assert first["incident"] == incident.number
    assert first["state"] == "draft"
    assert first["created_by"] is None
    assert first["delivery"] is None
    assert first["status_update"] is not None


def test_unknown_incident_or_post_is_404(api_as, viewer, incident, post):
    api = api_as(viewer)
    assert api.get("/api/v1/incidents/INC-2000-0101-999/social-posts/").status_code == 404
    assert api.get(url(incident, 999999)).status_code == 404
    other = IncidentFactory(severity=3)
    assert api.get(url(other, post.pk)).status_code == 404


def test_the_whole_flow(api_as, communications_lead, business_liaison, incident, post):
    lead, liaison = api_as(communications_lead), api_as(business_liaison)

    response = lead.patch(url(incident, post.pk), {"body": "Checkout is down."}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["body"] == "Checkout is down."

    response = liaison.post(url(incident, post.pk, "approve"))
    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "approved"
    assert response.json()["approved_by"]["username"] == business_liaison.username

    response = lead.post(url(incident, post.pk, "send"))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"] == "sent"
    assert body["delivery"]["status"] == "pending"
    # Sending again: the same post, no second message.
    assert lead.post(url(incident, post.pk, "send")).status_code == 200
    [row] = notification_list(incident=incident)
    assert row.channel == "mastodon" and row.body == "Checkout is down."


def test_discard(api_as, communications_lead, incident, post):
    response = api_as(communications_lead).post(url(incident, post.pk, "discard"))
    assert response.status_code == 200
    assert response.json()["state"] == "discarded"


@pytest.mark.parametrize(
    ("role", "method", "parts", "data"),
    [
        ("viewer", "patch", (), {"body": "Hi."}),
        ("business_liaison", "patch", (), {"body": "Hi."}),
        ("communications_lead", "post", ("approve",), None),
        ("viewer", "post", ("send",), None),
        ("technical_lead", "post", ("discard",), None),
    ],
)
def test_roles_are_refused_with_403(request, api_as, incident, post, role, method, parts, data):
    api = api_as(request.getfixturevalue(role))
    response = getattr(api, method)(url(incident, post.pk, *parts), data, format="json")
    assert response.status_code == 403, response.json()
    post.refresh_from_db()
    assert post.state == SocialPostState.DRAFT
    assert post.body.startswith("Checkout is down")


def test_sending_a_draft_is_a_409_with_the_allowed_steps(
    api_as, communications_lead, incident, post
):
    response = api_as(communications_lead).post(url(incident, post.pk, "send"))
    assert response.status_code == 409
    assert response.json()["allowed_actions"] == ["edit", "approve", "discard"]
    assert notification_list().count() == 0


def test_editing_a_sent_post_is_a_409(
    api_as, communications_lead, business_liaison, incident, post
):
    api_as(business_liaison).post(url(incident, post.pk, "approve"))
    api_as(communications_lead).post(url(incident, post.pk, "send"))
    response = api_as(communications_lead).patch(
        url(incident, post.pk), {"body": "Changed."}, format="json"
    )
    assert response.status_code == 409
    post.refresh_from_db()
    assert post.state == SocialPostState.SENT and post.body != "Changed."


@pytest.mark.parametrize(
    "data", [{"body": ""}, {"body": "   "}, {"body": "x" * 501}, {}, {"body": None}]
)
def test_bad_text_is_a_400_and_changes_nothing(api_as, communications_lead, incident, post, data):
    before = post.body
    response = api_as(communications_lead).patch(url(incident, post.pk), data, format="json")
    assert response.status_code == 400, response.json()
    assert "body" in response.json()["errors"]
    post.refresh_from_db()
    assert post.body == before


def test_anonymous_is_refused(client, incident, post):
    assert client.get(url(incident)).status_code in (401, 403)
