"""Customer email as the recipient's mail client sees it: contacts of affected customers for
Sev 1-2 customer-facing incidents only (opt-out respected, no one twice), the subject with the
incident's public id and status, text and HTML parts with the sanitized body, the company's
name and links, the list, unsubscribe and threading headers across two updates, the
restoration notice, and a reply landing on the incident's timeline through the inbound path."""

from __future__ import annotations

import base64
import json
import re

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.utils import timezone

from communications.models import (
    Message,
    MessageAudience,
    Subscriber,
    UpdateKind,
    UpdateState,
)
from communications.services.links import contact_optout_url, link_url
from escalation.outbox import email_message_id
from incidents.models import Kind, Source, TimelineEntry
from incidents.services import incident_transition
from tests.communications.fanout_fixtures import (
    components,
    contact,
    delivered,
    eager,
    page,
    parsed,
    publish_update,
    subscribe,
)
from tests.events import follow_events
from tests.factories import IncidentFactory

__all__ = ["components", "eager", "page"]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager")]


def sev(components, severity: int, *, customer_facing: bool = True, status="investigating"):
    return IncidentFactory(
        title="Internal: PSP cert expired",
        severity=severity,
        customer_facing=customer_facing,
        status=status,
        services=[components["checkout"].service],
    )


@pytest.fixture
def publish(django_capture_on_commit_callbacks, communications_lead, business_liaison):
    def run(incident, **kwargs):
        return publish_update(
            django_capture_on_commit_callbacks,
            incident=incident,
            author=communications_lead,
            approver=business_liaison,
            **kwargs,
        )

    return run


# --- who -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "customer_facing", "contacts_mailed"),
    [(1, True, True), (2, True, True), (3, True, False), (2, False, False)],
)
def test_customer_contacts_get_updates_of_sev_1_2_customer_facing_incidents(
    components, publish, severity, customer_facing, contacts_mailed
):
    checkout, login = components["checkout"].service, components["login"].service
    contact("buyer@acme.example", services=[checkout])
    contact("optout@acme.example", services=[checkout], opted_in=False)
    contact("login-user@other.example", services=[login], customer="Other")
    subscribe("fan@example.org")

    incident = sev(components, severity, customer_facing=customer_facing)
    publish(incident, components={"checkout": "major_outage"})

    expected = ["fan@example.org"] + (["buyer@acme.example"] if contacts_mailed else [])
    assert sorted(delivered()) == sorted(expected)


def test_no_one_gets_one_update_twice(components, publish):
    checkout = components["checkout"].service
    subscribe("Both@Acme.example")
    contact("both@acme.example", services=[checkout])
    contact("BOTH@acme.example", services=[checkout], customer="Acme EU")
    contact("other@acme.example", services=[checkout], customer="Acme EU")
    incident = sev(components, 2)

    update = publish(incident)

    assert sorted(delivered()) == ["both@acme.example", "other@acme.example"]
    audiences = dict(
        Message.objects.filter(status_update=update).values_list("recipient", "audience")
    )
    assert audiences == {
        "both@acme.example": MessageAudience.SUBSCRIBER,
        "other@acme.example": MessageAudience.CUSTOMER,
    }


# --- what ----------------------------------------------------------------------------------------


def test_a_customer_email_as_the_mail_client_reads_it(components, publish, settings):
    settings.VIGIL_EMAIL_UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    buyer = contact("buyer@acme.example", services=[components["checkout"].service])
    incident = sev(components, 1)

    # The opt-out link is signed with a timestamp: the clock stands still so that the link
    # made again below is the one the e-mail carries, whichever second each is made in.
    with time_machine.travel(timezone.now(), tick=False):
        update = publish(
            incident,
            body=(
                "Payments **fail**. <script>alert('x')</script> "
                "[details](javascript:alert(1)) <img src=x onerror=alert(2)>"
            ),
            components={"checkout": "major_outage"},
        )
        optout = contact_optout_url(buyer)

    message = delivered()["buyer@acme.example"]
    received = parsed(message)
    row = Message.objects.get(status_update=update)
    subject = f"[Example Co Status] Investigating: Payments failing at checkout ({incident.number})"
    assert received["Subject"] == subject
    assert received["From"] == "Example Co Status <status@example.com>"
    assert received["Message-ID"] == email_message_id(row.idempotency_key) == row.message_id
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["List-Id"] == '"Example Co Status" <status-updates.status.example.com>'
    # (A long header is folded: the value may start on its continuation line.)
    assert received["List-Unsubscribe"].strip() == (
        f"<{optout}>, <mailto:unsubscribe@example.com?subject=unsubscribe>"
    )
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert "Investigating: Payments failing at checkout" in text
    assert incident.number in text
    assert "Payments fail." in text
    assert "- Checkout: Major outage" in text
    assert f"https://status.example.com/incidents/{incident.number}.html" in text
    assert f"Stop incident email: {optout}" in text
    assert "Example Co Status: https://status.example.com" in text

    assert "<strong>fail</strong>" in html
    # Raw HTML is shown as text, as on the status page: no element, no handler, no js link.
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert f'href="{optout}"' in html
    assert 'href="https://status.example.com"' in html
    assert "Example Co Status" in html
    assert "PSP" not in text + html  # the internal title stays internal


def test_a_subscriber_email_carries_manage_and_one_click_unsubscribe_links(components, publish):
    subscriber = subscribe("fan@example.org")
    # The links are signed with a timestamp: the clock stands still so that the links made
    # here again are the ones the e-mail carries, whichever second each is made in.
    with time_machine.travel(timezone.now(), tick=False):
        publish(sev(components, 3))
        received = parsed(delivered()["fan@example.org"])
        unsubscribe = link_url(subscriber, "unsubscribe")
        manage = link_url(subscriber, "manage")
    assert received["List-Unsubscribe"].strip() == f"<{unsubscribe}>"
    text = received.get_body(("plain",)).get_content()
    assert f"Manage your subscription: {manage}" in text
    assert f"Unsubscribe: {unsubscribe}" in text


def test_every_update_of_one_incident_is_one_conversation_per_recipient(components, publish):
    subscribe("fan@example.org")
    subscribe("other@example.org")
    incident = sev(components, 3)
    other_incident = sev(components, 3)

    first = publish(incident)
    before = {to: parsed(m) for to, m in delivered().items()}
    mail.outbox.clear()
    second = publish(incident, status="identified", title="Payments failing: cause found")
    after = {to: parsed(m) for to, m in delivered().items()}
    mail.outbox.clear()
    publish(other_incident, title="Login slow")
    unrelated = parsed(delivered()["fan@example.org"])

    root = before["fan@example.org"]["References"]
    assert root == before["fan@example.org"]["In-Reply-To"]
    assert root == before["other@example.org"]["References"]  # the incident's thread root
    for address in ("fan@example.org", "other@example.org"):
        first_id = before[address]["Message-ID"]
        assert after[address]["In-Reply-To"] == first_id
        assert after[address]["References"].split() == [root, first_id]
        assert after[address]["Message-ID"] not in (first_id, root)
    assert before["fan@example.org"]["Message-ID"] != before["other@example.org"]["Message-ID"]
    assert after["fan@example.org"]["Subject"].startswith("[Example Co Status] Identified: ")
    assert unrelated["References"] != root
    assert first.pk != second.pk


def test_the_restoration_notice_reaches_the_contacts(components, publish):
    contact("buyer@acme.example", services=[components["checkout"].service])
    incident = sev(components, 2)
    publish(incident, components={"checkout": "major_outage"})
    mail.outbox.clear()

    incident_transition(
        incident=incident,
        action="resolve",
        actor=None,
        source=Source.SYSTEM,
        resolution="Certificate renewed.",
    )
    follow_events()
    notice = incident.status_updates.get(kind=UpdateKind.RESTORATION)
    assert notice.state == UpdateState.DRAFT
    publish(incident, update=notice)

    received = parsed(delivered()["buyer@acme.example"])
    assert received["Subject"] == (
        f"[Example Co Status] Resolved: {notice.public_title} ({incident.number})"
    )
    assert "Service restored." in received.get_body(("plain",)).get_content()


# --- a reply -------------------------------------------------------------------------------------

SECRET = "postmark-inbound:customer-reply-secret"


def test_a_reply_to_a_customer_email_lands_on_the_incidents_timeline(components, publish, settings):
    settings.VIGIL_INBOUND_EMAIL_PROVIDER = "postmark"
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    contact("buyer@acme.example", services=[components["checkout"].service])
    incident = sev(components, 2)
    publish(incident)
    received = parsed(delivered()["buyer@acme.example"])
    subject = received["Subject"]
    assert re.search(r"\(INC-\d{4}-\d{4}-\d{3,}\)$", subject)

    reply = {
        "FromName": "Dana Buyer",
        "From": "buyer@acme.example",
        "FromFull": {"Email": "buyer@acme.example", "Name": "Dana Buyer", "MailboxHash": ""},
        "To": "status@example.com",
        "ToFull": [{"Email": "status@example.com", "Name": "", "MailboxHash": ""}],
        "Subject": f"Re: {subject}",
        "MessageID": "5a1e0f8e-reply-0001",
        "Date": "Mon, 2 Mar 2026 10:12:00 +0000",
        "TextBody": f"Our shop is losing orders, please call us.\n\n> {subject}",
        "StrippedTextReply": "Our shop is losing orders, please call us.",
        "HtmlBody": "",
        "Headers": [
            {"Name": "Message-ID", "Value": "<reply-0001@acme.example>"},
            {"Name": "In-Reply-To", "Value": received["Message-ID"]},
        ],
        "Attachments": [],
    }
    auth = "Basic " + base64.b64encode(SECRET.encode()).decode()
    response = Client().post(
        "/anymail/postmark/inbound/",
        json.dumps(reply),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )
    assert response.status_code == 200
    [entry] = TimelineEntry.objects.filter(incident=incident, source=Source.EMAIL, kind=Kind.NOTE)
    assert "Our shop is losing orders, please call us." in entry.message
    assert "buyer@acme.example" in entry.message or entry.data.get("reporter_email") == (
        "buyer@acme.example"
    )
    assert Subscriber.objects.count() == 0
