"""Delivery tracking through the ESP's own signed webhooks, posted over HTTP as the ESP posts
them: Mailgun's HMAC-signed JSON events (matched by the idempotency key sent as metadata) and
Postmark's basic-auth events (matched by the provider's message id). Each event is recorded
once, moves the message forward only, and hard bounces, complaints and unsubscribes suppress
the address; unsigned, wrongly signed or unparsable posts get a 4xx and write nothing. The
admin's counts follow (sent when the outbox sent it, then what the ESP reported)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from communications.models import (
    CustomerContact,
    DeliveryState,
    Message,
    MessageEvent,
    SubscriberState,
    Suppression,
    SuppressionReason,
)
from communications.tasks import fanout_sweep_task
from tests.communications.fanout_fixtures import (
    components,
    contact,
    delivered,
    eager,
    page,
    publish_update,
    subscribe,
)
from tests.factories import IncidentFactory

__all__ = ["components", "eager", "page"]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager")]

MAILGUN = "/anymail/mailgun/tracking/"
POSTMARK = "/anymail/postmark/tracking/"
MAILGUN_KEY = "mailgun-webhook-signing-key-0123456789"
SECRET = "postmark-tracking:secret-42"


@pytest.fixture
def tracking(settings):
    settings.VIGIL_EMAIL_TRACKING_PROVIDER = "mailgun"
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    return settings


@pytest.fixture
def sent(django_capture_on_commit_callbacks, components, communications_lead, tracking):
    """One Sev 3 update delivered to a subscriber and (Sev 2 would add contacts) recorded as
    sent by the reconcile sweep."""
    subscribe("fan@example.org")
    subscribe("other@example.org")
    incident = IncidentFactory(
        severity=3,
        customer_facing=True,
        status="investigating",
        services=[components["checkout"].service],
    )
    update = publish_update(
        django_capture_on_commit_callbacks, incident=incident, author=communications_lead
    )
    assert sorted(delivered()) == ["fan@example.org", "other@example.org"]
    return {m.recipient: m for m in Message.objects.filter(status_update=update)}


def mailgun_post(event_data: dict, *, key: str = MAILGUN_KEY, token: str = "tok-1", **extra):
    timestamp = str(int(time.time()))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    body = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }
    return Client().post(MAILGUN, json.dumps(body), content_type="application/json", **extra)


def mailgun_event(message: Message, event: str, **fields) -> dict:
    return {
        "event": event,
        "timestamp": time.time(),
        "id": "evt-" + event,
        "recipient": message.recipient,
        "message": {"headers": {"message-id": "20261202.abc@mg.example.com"}},
        "user-variables": {"vigil_idempotency_key": message.idempotency_key},
        **fields,
    }


def state_of(message: Message) -> str:
    return Message.objects.values_list("state", flat=True).get(pk=message.pk)


def test_the_reconcile_sweep_marks_messages_sent_with_the_providers_id(sent):
    message = sent["fan@example.org"]
    assert state_of(message) == DeliveryState.QUEUED
    fanout_sweep_task.delay()
    message.refresh_from_db()
    assert message.state == DeliveryState.SENT
    assert message.provider_message_id == message.message_id.strip("<>")


def test_delivered_is_recorded_once_and_never_undone(sent):
    message = sent["fan@example.org"]
    fanout_sweep_task.delay()

    assert mailgun_post(mailgun_event(message, "delivered"), token="t-delivered").status_code == 200
    assert state_of(message) == DeliveryState.DELIVERED
    # Mailgun retries a webhook it thinks failed: the same event, the same token.
    assert mailgun_post(mailgun_event(message, "delivered"), token="t-delivered").status_code == 200
    assert MessageEvent.objects.filter(message=message).count() == 1
    # A late temporary failure (Mailgun "failed" with severity temporary = deferred).
    late = mailgun_event(message, "failed", severity="temporary", reason="generic")
    assert mailgun_post(late, token="t-late").status_code == 200
    assert state_of(message) == DeliveryState.DELIVERED
    assert MessageEvent.objects.filter(message=message).count() == 2
    # The sweep never moves it back to "sent" either.
    fanout_sweep_task.delay()
    assert state_of(message) == DeliveryState.DELIVERED
    assert not Suppression.objects.exists()


def test_a_hard_bounce_suppresses_the_address_and_the_next_update_skips_it(
    sent, django_capture_on_commit_callbacks, communications_lead
):
    message = sent["fan@example.org"]
    bounce = mailgun_event(
        message,
        "failed",
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": ""}},
    )
    assert mailgun_post(bounce, token="t-bounce").status_code == 200
    message.refresh_from_db()
    assert message.state == DeliveryState.BOUNCED
    assert "No such user" in message.state_detail
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason) == (
        "fan@example.org",
        SuppressionReason.HARD_BOUNCE,
    )

    mail.outbox.clear()
    publish_update(
        django_capture_on_commit_callbacks,
        incident=message.incident,
        author=communications_lead,
        status="resolved",
        title="Fixed",
        body="Fixed.",
    )
    assert sorted(delivered()) == ["other@example.org"]


def test_a_complaint_suppresses_and_an_unsubscribe_ends_the_subscription(sent):
    fan, other = sent["fan@example.org"], sent["other@example.org"]
    assert mailgun_post(mailgun_event(fan, "complained"), token="t-spam").status_code == 200
    assert mailgun_post(mailgun_event(other, "unsubscribed"), token="t-unsub").status_code == 200

    assert state_of(fan) == DeliveryState.COMPLAINED
    assert state_of(other) == DeliveryState.UNSUBSCRIBED
    assert dict(Suppression.objects.values_list("email", "reason")) == {
        "fan@example.org": SuppressionReason.COMPLAINT,
        "other@example.org": SuppressionReason.UNSUBSCRIBED,
    }
    other.subscriber.refresh_from_db()
    assert other.subscriber.state == SubscriberState.UNSUBSCRIBED
    fan.subscriber.refresh_from_db()
    assert fan.subscriber.state == SubscriberState.ACTIVE


@pytest.mark.parametrize(
    "tamper",
    ["unsigned", "wrong key", "changed body", "malformed", "other provider"],
)
def test_unsigned_or_wrongly_signed_events_are_refused_and_change_nothing(sent, tamper, settings):
    message = sent["fan@example.org"]
    event = mailgun_event(message, "complained")
    if tamper == "unsigned":
        body = json.dumps({"event-data": event})
        response = Client().post(MAILGUN, body, content_type="application/json")
    elif tamper == "wrong key":
        response = mailgun_post(event, key="not-the-key")
    elif tamper == "changed body":
        timestamp, token = str(int(time.time())), "t-x"
        signature = hmac.new(
            MAILGUN_KEY.encode(), f"{timestamp}{token}x".encode(), hashlib.sha256
        ).hexdigest()
        body = {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        }
        response = Client().post(MAILGUN, json.dumps(body), content_type="application/json")
    elif tamper == "malformed":
        response = mailgun_post({"no-event": True})
    else:
        settings.VIGIL_EMAIL_TRACKING_PROVIDER = "postmark"
        response = mailgun_post(event)
    assert 400 <= response.status_code < 500
    assert not MessageEvent.objects.exists()
    assert not Suppression.objects.exists()
    assert state_of(message) == DeliveryState.QUEUED


def test_tracking_is_off_until_a_provider_is_configured(sent, settings):
    settings.VIGIL_EMAIL_TRACKING_PROVIDER = ""
    message = sent["fan@example.org"]
    assert mailgun_post(mailgun_event(message, "complained")).status_code == 404
    assert not MessageEvent.objects.exists()


# --- Postmark: basic auth, matched by the provider's message id -----------------------------------


def postmark_post(payload: dict, *, secret: str | None = SECRET):
    headers = {}
    if secret is not None:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(secret.encode()).decode()
    return Client().post(POSTMARK, json.dumps(payload), content_type="application/json", **headers)


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailInsecureWebhookWarning")
def test_postmark_events_need_the_webhook_secret_and_match_by_message_id(
    django_capture_on_commit_callbacks, components, communications_lead, business_liaison, settings
):
    settings.VIGIL_EMAIL_TRACKING_PROVIDER = "postmark"
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    buyer = contact("buyer@acme.example", services=[components["checkout"].service])
    incident = IncidentFactory(
        severity=2,
        customer_facing=True,
        status="investigating",
        services=[components["checkout"].service],
    )
    publish_update(
        django_capture_on_commit_callbacks,
        incident=incident,
        author=communications_lead,
        approver=business_liaison,
    )
    fanout_sweep_task.delay()
    message = Message.objects.get(contact=buyer)
    unsubscribe = {
        "RecordType": "SubscriptionChange",
        "MessageID": message.provider_message_id,
        "ServerID": 23,
        "MessageStream": "outbound",
        "ChangedAt": "2026-12-02T10:00:00Z",
        "Recipient": "buyer@acme.example",
        "Origin": "Recipient",
        "SuppressSending": True,
        "SuppressionReason": "Unsubscribe",
        "Tag": "",
        "Metadata": {},
    }

    assert postmark_post(unsubscribe, secret=None).status_code == 400
    assert postmark_post(unsubscribe, secret="wrong:secret").status_code == 400
    settings.ANYMAIL = {}  # no secret configured: Postmark has no signature, so refused
    assert postmark_post(unsubscribe).status_code == 400
    assert not MessageEvent.objects.exists()

    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    assert postmark_post(unsubscribe).status_code == 200
    assert postmark_post(unsubscribe).status_code == 200  # no event id: one derived, once
    assert MessageEvent.objects.filter(message=message).count() == 1
    assert state_of(message) == DeliveryState.UNSUBSCRIBED
    buyer.refresh_from_db()
    assert buyer.incident_email is False
    assert Suppression.objects.get().reason == SuppressionReason.UNSUBSCRIBED
    assert CustomerContact.objects.filter(incident_email=True).count() == 0


def test_the_admin_counts_deliveries_per_update(sent, superuser, client):
    fan, other = sent["fan@example.org"], sent["other@example.org"]
    fanout_sweep_task.delay()
    mailgun_post(mailgun_event(fan, "delivered"), token="t-d")
    mailgun_post(mailgun_event(other, "failed", severity="permanent", reason="bounce"), token="t-b")
    client.force_login(superuser)
    listing = client.get(reverse("admin:communications_statusupdate_changelist"))
    assert listing.status_code == 200
    assert "1 delivered" in listing.content.decode()
    assert "1 bounced" in listing.content.decode()
    page = client.get(
        reverse("admin:communications_statusupdate_change", args=[fan.status_update_id])
    )
    content = page.content.decode()
    assert "1 delivered" in content and "1 bounced" in content
    messages = client.get(
        reverse("admin:communications_message_changelist")
        + f"?status_update__id__exact={fan.status_update_id}"
    )
    assert messages.status_code == 200
    detail = client.get(reverse("admin:communications_message_change", args=[other.pk]))
    assert detail.status_code == 200
    assert "bounced" in detail.content.decode()


def test_the_api_counts_deliveries_per_update(sent, communications_lead):
    from rest_framework.test import APIClient

    fan, other = sent["fan@example.org"], sent["other@example.org"]
    fanout_sweep_task.delay()
    mailgun_post(mailgun_event(fan, "delivered"), token="t-d")
    mailgun_post(mailgun_event(other, "failed", severity="permanent", reason="bounce"), token="t-b")
    api = APIClient()
    api.force_authenticate(communications_lead)
    number = fan.incident.number
    listing = api.get(f"/api/v1/incidents/{number}/status-updates/")
    assert listing.status_code == 200
    (row,) = [u for u in listing.json()["results"] if u["id"] == fan.status_update_id]
    assert row["deliveries"] == {
        "queued": 0,
        "sent": 0,
        "delivered": 1,
        "bounced": 1,
        "complained": 0,
        "failed": 0,
    }
    detail = api.get(f"/api/v1/incidents/{number}/status-updates/{fan.status_update_id}/")
    assert detail.json()["deliveries"]["delivered"] == 1
