"""Status updates in the admin: drafting with components, approve and publish buttons that call
the services (refusals as messages, nothing changed), read-only once published, the live
preview's sanitized HTML, the incident page's panel, list actions, the policy's validation."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from communications.models import (
    CommunicationPolicy,
    ComponentStatus,
    StatusUpdate,
    UpdateState,
)
from communications.services.components import component_create
from communications.services.updates import status_update_create
from incidents.models import Source
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/communications/statusupdate/add/"


def change_url(update) -> str:
    return f"/admin/communications/statusupdate/{update.pk}/change/"


def step_url(update, step) -> str:
    return f"/admin/communications/statusupdate/{update.pk}/{step}/"


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def checkout(db):
    service = ServiceFactory(slug="checkout", name="checkout-internal", public_name="Checkout")
    return component_create(service=service, actor=None)


@pytest.fixture
def sev1(checkout):
    return IncidentFactory(title="INTERNAL db-7 lag", severity=1, services=[checkout.service])


def make_draft(incident, author, **kwargs):
    values = {
        "public_title": "Checkout is slow",
        "public_status": "investigating",
        "body": "Looking into it.",
    }
    values.update(kwargs)
    return status_update_create(incident=incident, actor=author, source=Source.ADMIN, **values)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_draft_in_the_admin_with_components(communications_lead, sev1, checkout):
    client = browser(communications_lead)
    form = client.get(ADD, {"incident_number": sev1.number})
    assert form.status_code == 200
    assert form.context["adminform"].form.initial["incident"] == sev1.pk
    field = f"component_{checkout.pk}"
    assert f'<select name="{field}"' in form.content.decode()  # shown, not only accepted
    response = client.post(
        ADD,
        {
            "incident": sev1.pk,
            "public_title": "Checkout is slow",
            "public_status": "investigating",
            "body": "We are **looking** into it.",
            field: "partial_outage",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    update = StatusUpdate.objects.get()
    assert update.state == UpdateState.DRAFT
    assert update.created_by == communications_lead
    assert update.body_html == "<p>We are <strong>looking</strong> into it.</p>\n"
    assert [(a.component, a.new_status) for a in update.affected.all()] == [
        (checkout, ComponentStatus.PARTIAL_OUTAGE)
    ]
    assert update.history.latest().history_change_reason == "drafted (admin)"


def test_blank_title_gets_the_prompt_and_cannot_be_published(communications_lead, make_incident):
    incident = make_incident(title="INTERNAL only", severity=3)
    client = browser(communications_lead)
    client.post(
        ADD,
        {"incident": incident.pk, "public_title": "", "public_status": "identified", "body": "x"},
    )
    update = StatusUpdate.objects.get()
    assert update.public_title.startswith("[Write")
    response = client.post(step_url(update, "publish"), follow=True)
    assert any("Write a customer-facing title" in m for m in messages_of(response))
    update.refresh_from_db()
    assert update.state == UpdateState.DRAFT


def test_publish_button_refused_without_approval_then_allowed(
    communications_lead, business_liaison, sev1, checkout
):
    update = make_draft(sev1, communications_lead, components={checkout: "major_outage"})
    lead = browser(communications_lead)
    page = lead.get(change_url(update))
    assert "business liaison&#x27;s approval is needed" in page.content.decode()
    refused = lead.post(step_url(update, "publish"), follow=True)
    assert any("Not published" in m and "approval" in m for m in messages_of(refused))
    update.refresh_from_db()
    checkout.refresh_from_db()
    assert update.state == UpdateState.DRAFT
    assert checkout.status == ComponentStatus.OPERATIONAL

    liaison = browser(business_liaison)
    page = liaison.get(change_url(update))
    assert step_url(update, "approve") in page.content.decode()
    assert liaison.post(step_url(update, "approve")).status_code == 302
    update.refresh_from_db()
    assert update.state == UpdateState.APPROVED

    published = lead.post(step_url(update, "publish"), follow=True)
    assert any("published" in m for m in messages_of(published))
    update.refresh_from_db()
    checkout.refresh_from_db()
    assert update.state == UpdateState.PUBLISHED
    assert checkout.status == ComponentStatus.MAJOR_OUTAGE


def test_change_page_shows_the_public_rendering(communications_lead, viewer, sev1):
    update = make_draft(
        sev1, communications_lead, body="Some **payments** fail. <script>alert(1)</script>"
    )
    for user in (communications_lead, viewer):
        content = browser(user).get(change_url(update)).content.decode()
        start = content.index('id="status-update-preview"')
        preview = content[start : content.index("</div>", start)]
        assert "<strong>payments</strong>" in preview
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in preview
        assert "<script>alert(1)" not in content


def test_approve_own_draft_refused_in_the_admin(superuser, sev1):
    update = make_draft(sev1, superuser)
    response = browser(superuser).post(step_url(update, "approve"), follow=True)
    assert any("cannot approve your own draft" in m for m in messages_of(response))
    update.refresh_from_db()
    assert update.state == UpdateState.DRAFT


def test_viewer_cannot_step(viewer, communications_lead, sev1):
    update = make_draft(sev1, communications_lead)
    client = browser(viewer)
    assert client.get(change_url(update)).status_code == 200  # reads
    response = client.post(step_url(update, "approve"), follow=True)
    assert any("may not approve" in m for m in messages_of(response))
    assert client.get(step_url(update, "approve")).status_code == 405
    update.refresh_from_db()
    assert update.state == UpdateState.DRAFT


def test_published_update_is_read_only(communications_lead, make_incident, checkout):
    incident = make_incident(severity=3)
    update = make_draft(incident, communications_lead, components={checkout: "partial_outage"})
    client = browser(communications_lead)
    client.post(step_url(update, "publish"))
    page = client.get(change_url(update))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'name="_save"' not in content
    assert "Published updates are immutable" in content
    assert "Checkout: Partial outage (was operational)" in content
    response = client.post(
        change_url(update),
        {"public_title": "Changed", "public_status": "resolved", "body": "Changed."},
    )
    assert response.status_code == 403
    update.refresh_from_db()
    assert update.public_title == "Checkout is slow"


def test_editing_in_the_admin_withdraws_approval(
    communications_lead, business_liaison, sev1, checkout
):
    update = make_draft(sev1, communications_lead)
    browser(business_liaison).post(step_url(update, "approve"))
    response = browser(communications_lead).post(
        change_url(update),
        {
            "public_title": "Checkout is slow",
            "public_status": "identified",
            "body": "Found it.",
            f"component_{checkout.pk}": "",
        },
    )
    assert response.status_code == 302
    update.refresh_from_db()
    assert update.state == UpdateState.DRAFT
    assert update.approved_by is None
    assert update.body == "Found it."


def test_preview_is_sanitized(communications_lead, viewer):
    url = "/admin/communications/statusupdate/preview/"
    body = "<script>alert(1)</script> [x](javascript:alert(2)) <img src=x onerror=alert(3)> **ok**"
    response = browser(communications_lead).post(url, {"body": body})
    assert response.status_code == 200
    html = response.json()["html"]
    assert "<strong>ok</strong>" in html
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert browser(viewer).post(url, {"body": body}).status_code == 403


def test_incident_page_lists_updates_and_links_to_post_one(
    communications_lead, viewer, sev1, checkout
):
    update = make_draft(sev1, communications_lead, public_title="Checkout <b>slow</b>")
    page = browser(communications_lead).get(f"/admin/incidents/incident/{sev1.pk}/change/")
    content = page.content.decode()
    assert 'id="panel-status-updates"' in content
    assert change_url(update) in content
    assert "Checkout &lt;b&gt;slow&lt;/b&gt;" in content
    assert f"{ADD}?incident_number={sev1.number}" in content
    viewer_page = browser(viewer).get(f"/admin/incidents/incident/{sev1.pk}/change/")
    assert 'id="panel-status-updates"' in viewer_page.content.decode()
    assert "Post a status update" not in viewer_page.content.decode()


def test_list_actions_report_each_refusal(communications_lead, sev1, make_incident):
    sev3 = make_incident(severity=3)
    blocked = make_draft(sev1, communications_lead)
    fine = make_draft(sev3, communications_lead)
    response = browser(communications_lead).post(
        "/admin/communications/statusupdate/",
        {"action": "publish_selected", "_selected_action": [blocked.pk, fine.pk]},
        follow=True,
    )
    texts = messages_of(response)
    assert "1 update(s) published." in texts
    assert any(m.startswith(f"Not published: {sev1.number}") for m in texts)
    blocked.refresh_from_db()
    fine.refresh_from_db()
    assert (blocked.state, fine.state) == (UpdateState.DRAFT, UpdateState.PUBLISHED)


def test_policy_admin_validates_and_keeps_history(superuser):
    client = browser(superuser)
    url = "/admin/communications/communicationpolicy/1/change/"
    bad = client.post(
        url,
        {
            "approval_severities": "[1, 7]",
            "first_update_minutes": "30",
            "reminder_minutes": "[15, 45]",
        },
    )
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "approval_severities" in errors and "reminder_minutes" in errors
    assert CommunicationPolicy.objects.get().approval_severities == [1, 2]
    good = client.post(
        url,
        {"approval_severities": "[1]", "first_update_minutes": "20", "reminder_minutes": "[10]"},
    )
    assert good.status_code == 302
    policy = CommunicationPolicy.objects.get()
    assert (policy.approval_severities, policy.first_update_minutes) == ([1], 20)
    assert policy.history.latest().history_user == superuser
