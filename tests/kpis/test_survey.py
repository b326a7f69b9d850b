"""The customer satisfaction survey's invitations: who is invited when a customer-facing incident
resolves (the contacts of the customers using its services who receive incident email, each
address once, suppressed ones left out), what the e-mail says (public wording only, five
rating links, text and HTML, list headers) and that a reopen and a second resolution invite
nobody twice."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from communications.models import Suppression, SuppressionReason
from escalation.models import Notification
from incidents.models import Source
from incidents.services import incident_reopen, incident_transition
from kpis.models import KpiPolicy, SurveyInvitation
from tests.communications.fanout_fixtures import (
    components,
    contact,
    eager,
    page,
    parsed,
    publish_update,
)
from tests.events import follow_events
from tests.factories import IncidentFactory

__all__ = ["components", "eager", "page"]

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
RATE_LINK = re.compile(r"https://vigil\.example\.com/survey/([^/\s\"]+)/rate/(\d)/")
INTERNAL = "Internal: PSP cert expired on db-7"


def incident_on(service, *, customer_facing: bool = True, status: str = "investigating"):
    return IncidentFactory(
        title=INTERNAL,
        summary="The PSP certificate on db-7 expired; the on-call rotated it.",
        severity=2,
        customer_facing=customer_facing,
        status=status,
        services=[service],
    )


def resolve(incident):
    incident = incident_transition(
        incident=incident,
        action="resolve",
        actor=None,
        source=Source.SYSTEM,
        resolution="Rotated the certificate.",
    )
    follow_events()
    return incident


def survey_rows():
    return Notification.objects.filter(idempotency_key__startswith="survey:").order_by("pk")


def rate_links(body: str) -> list[tuple[str, str]]:
    return RATE_LINK.findall(body)


# --- who -----------------------------------------------------------------------------------------


def test_resolving_invites_each_affected_contact_once(components):
    checkout, login = components["checkout"].service, components["login"].service
    buyer = contact("buyer@acme.example", services=[checkout])
    contact("BUYER@acme.example", services=[checkout], customer="Acme EU")
    contact("optout@acme.example", services=[checkout], opted_in=False)
    contact("bounced@acme.example", services=[checkout])
    contact("other@acme.example", services=[checkout], customer="Acme EU")
    contact("login-user@beta.example", services=[login], customer="Beta")
    Suppression.objects.create(email="Bounced@ACME.example", reason=SuppressionReason.HARD_BOUNCE)
    with time_machine.travel(T0, tick=False):
        resolve(incident_on(checkout))

    invitations = list(SurveyInvitation.objects.order_by("email"))
    assert [(i.email, i.customer_name) for i in invitations] == [
        ("buyer@acme.example", "Acme"),
        ("other@acme.example", "Acme EU"),
    ]
    first = invitations[0]
    assert first.contact == buyer
    assert first.sent_at == T0
    assert first.expires_at == T0 + timedelta(days=KpiPolicy.objects.get().survey_expiry_days)
    assert first.rating is None
    rows = list(survey_rows())
    assert {row.recipient: row.idempotency_key for row in rows} == {
        i.email: f"survey:{i.pk}" for i in invitations
    }
    assert all(row.incident_id == first.incident_id for row in rows)


def test_the_invitation_email_has_text_html_five_links_and_public_words_only(components):
    buyer = contact("buyer@acme.example", services=[components["checkout"].service])
    incident = resolve(incident_on(components["checkout"].service))

    row = survey_rows().get()
    invitation = SurveyInvitation.objects.get()
    assert row.subject == (
        f"[Example Co Status] How did we do? Service disruption: Checkout ({incident.number})"
    )
    html = row.context["html"]
    for part in (row.subject, row.body, html):
        assert "Internal" not in part
        assert "db-7" not in part
        assert "(internal)" not in part  # the service's internal name
    links = rate_links(row.body)
    assert [n for _, n in links] == ["1", "2", "3", "4", "5"]
    assert len({token for token, _ in links}) == 1
    assert [n for _, n in rate_links(html)] == ["1", "2", "3", "4", "5"]
    assert "Very satisfied" in row.body and "Very satisfied" in html
    headers = row.context["headers"]
    assert headers["List-Unsubscribe"].startswith(
        "<https://vigil.example.com/status/subscriptions/contact-optout/"
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Auto-Submitted"] == "auto-generated"
    assert headers["References"] == headers["In-Reply-To"]
    assert invitation.contact == buyer


def test_the_email_uses_the_published_status_update_title_escaped_in_html(
    components, django_capture_on_commit_callbacks, communications_lead, business_liaison, eager
):
    checkout = components["checkout"].service
    contact("buyer@acme.example", services=[checkout])
    incident = incident_on(checkout)
    publish_update(
        django_capture_on_commit_callbacks,
        incident=incident,
        author=communications_lead,
        approver=business_liaison,
        title="Payments <failing> & slow",
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        resolve(incident)

    [message] = [m for m in mail.outbox if "How did we do?" in m.subject]
    assert message.to == ["buyer@acme.example"]
    assert "Payments <failing> & slow" in message.subject
    email = parsed(message)
    text = email.get_body(preferencelist=("plain",)).get_content()
    html = email.get_body(preferencelist=("html",)).get_content()
    assert "Payments <failing> & slow" in text
    assert "Payments &lt;failing&gt; &amp; slow" in html
    assert "<failing>" not in html
    assert len(rate_links(text)) == 5
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["Message-ID"]


def test_an_incident_that_is_not_customer_facing_surveys_no_one(components):
    contact("buyer@acme.example", services=[components["checkout"].service])
    resolve(incident_on(components["checkout"].service, customer_facing=False))

    assert not SurveyInvitation.objects.exists()
    assert not survey_rows().exists()


def test_with_the_survey_turned_off_no_one_is_surveyed(components):
    KpiPolicy.objects.filter(pk=1).update(survey_enabled=False)
    contact("buyer@acme.example", services=[components["checkout"].service])
    resolve(incident_on(components["checkout"].service))

    assert not SurveyInvitation.objects.exists()
    assert not survey_rows().exists()


def test_a_reopen_and_second_resolution_invite_no_one_twice(components):
    checkout = components["checkout"].service
    contact("buyer@acme.example", services=[checkout])
    incident = resolve(incident_on(checkout))
    assert survey_rows().count() == 1
    invitation = SurveyInvitation.objects.get()

    incident_reopen(incident=incident, actor=None, source=Source.SYSTEM, reason="Back again.")
    follow_events()
    contact("new@acme.example", services=[checkout])
    resolve(incident)

    assert SurveyInvitation.objects.count() == 2
    assert SurveyInvitation.objects.get(email="buyer@acme.example").pk == invitation.pk
    assert sorted(survey_rows().values_list("recipient", flat=True)) == [
        "buyer@acme.example",
        "new@acme.example",
    ]


def test_an_incident_reopened_before_the_handler_ran_waits_for_its_next_resolution(components):
    checkout = components["checkout"].service
    contact("buyer@acme.example", services=[checkout])
    incident = incident_on(checkout)
    incident = incident_transition(
        incident=incident, action="resolve", actor=None, source=Source.SYSTEM, resolution="Fix."
    )
    incident = incident_reopen(incident=incident, actor=None, source=Source.SYSTEM)
    follow_events()
    assert not SurveyInvitation.objects.exists()

    resolve(incident)
    assert SurveyInvitation.objects.count() == 1
    assert survey_rows().count() == 1


def test_an_incident_without_customers_on_its_services_surveys_no_one(components):
    contact("login-user@beta.example", services=[components["login"].service])
    resolve(incident_on(components["checkout"].service))

    assert not SurveyInvitation.objects.exists()
