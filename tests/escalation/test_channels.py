"""Each channel backend against a local server the test starts (or Django's locmem outbox),
asserting on what actually arrived there, and on how failures are classified."""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
import socket
from email import policy
from urllib.parse import parse_qs, urlparse

import pytest
from aiosmtpd.controller import Controller
from django.core import mail

from escalation.channels import (
    PermanentDeliveryError,
    TransientDeliveryError,
    backend_for,
)
from escalation.channels.email import EmailBackend, message_id
from escalation.channels.log import LogBackend
from escalation.channels.slack import SlackBackend
from escalation.channels.teams import TeamsBackend
from escalation.channels.twilio import TwilioSmsBackend, TwilioVoiceBackend
from escalation.channels.webhook import WebhookBackend
from tests import workers
from tests.escalation import channel_fixtures
from tests.workers import Reply

# Fixtures shared with the other delivery tests (pytest finds them by these names).
http_sink = workers.http_sink
no_external_network = workers.no_external_network
make_notification = channel_fixtures.make_notification
webhook = channel_fixtures.webhook

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

KEY_HEADER = channel_fixtures.KEY_HEADER
ACK_URL = channel_fixtures.ACK_URL
free_port = channel_fixtures.free_port


# --- email ---------------------------------------------------------------------------------------


def test_email_reaches_the_django_outbox_with_the_key(settings, make_notification):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Vigil <vigil@example.org>"
    notification = make_notification("email", "oncall@example.org")

    provider_id = EmailBackend().send(notification)

    [sent] = mail.outbox
    assert sent.to == ["oncall@example.org"]
    assert sent.subject == notification.subject
    assert f"Acknowledge: {ACK_URL}" in sent.body
    assert sent.extra_headers[KEY_HEADER] == notification.idempotency_key
    # The same key always gives the same Message-ID, so a repeat is the same message.
    assert sent.extra_headers["Message-ID"] == message_id(notification.idempotency_key)
    assert message_id(notification.idempotency_key).endswith("@example.org>")
    assert sent.metadata["vigil_idempotency_key"] == notification.idempotency_key
    assert provider_id == message_id(notification.idempotency_key).strip("<>")


def test_email_to_a_malformed_address_is_permanent(settings, make_notification):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with pytest.raises(PermanentDeliveryError, match="not an email address"):
        EmailBackend().send(make_notification("email", "not-an-address"))
    assert mail.outbox == []


class RecordingSmtpHandler:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.rcpt_reply = "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not self.rcpt_reply.startswith("250"):
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    handler = RecordingSmtpHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    yield handler
    controller.stop()
    # aiosmtpd leaves its loop closed in this thread; give later tests a fresh one.
    asyncio.set_event_loop(asyncio.new_event_loop())


def test_email_through_a_real_smtp_server(smtp_server, make_notification):
    notification = make_notification("email", "im@example.org")

    EmailBackend().send(notification)

    [(recipients, raw)] = smtp_server.messages
    assert recipients == ["im@example.org"]
    received = email.message_from_bytes(raw, policy=policy.default)
    assert received["Subject"] == notification.subject
    assert received[KEY_HEADER] == notification.idempotency_key
    assert received["Message-ID"] == message_id(notification.idempotency_key)
    assert f"Acknowledge: {ACK_URL}" in received.get_content()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("550 5.1.1 No such user here", PermanentDeliveryError),
        ("451 4.3.0 Try again later", TransientDeliveryError),
    ],
)
def test_smtp_refusals_are_classified(smtp_server, make_notification, reply, error):
    smtp_server.rcpt_reply = reply
    with pytest.raises(error):
        EmailBackend().send(make_notification("email", "gone@example.org"))
    assert smtp_server.messages == []


def test_email_server_down_is_transient(settings, make_notification):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there
    settings.EMAIL_TIMEOUT = 2
    with pytest.raises(TransientDeliveryError):
        EmailBackend().send(make_notification("email", "im@example.org"))


@pytest.fixture
def postmark(settings, http_sink):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "server-token", "POSTMARK_API_URL": http_sink.url}
    return http_sink


def test_email_through_an_anymail_esp_carries_the_key_as_metadata(postmark, make_notification):
    postmark.reply(
        Reply(
            body={
                "To": "im@example.org",
                "SubmittedAt": "2026-01-01T00:00:00Z",
                "MessageID": "pm-0001",
                "ErrorCode": 0,
                "Message": "OK",
            }
        )
    )
    notification = make_notification("email", "im@example.org")

    provider_id = EmailBackend().send(notification)

    [request] = postmark.requests()
    assert request.path == "/email"
    assert request.header("X-Postmark-Server-Token") == "server-token"
    payload = request.json()
    assert payload["To"] == "im@example.org"
    assert payload["Metadata"]["vigil_idempotency_key"] == notification.idempotency_key
    headers = {h["Name"]: h["Value"] for h in payload["Headers"]}
    assert headers[KEY_HEADER] == notification.idempotency_key
    assert provider_id == "pm-0001"


def test_esp_outage_is_transient_with_retry_after(postmark, make_notification):
    postmark.reply(Reply(status=503, body="unavailable", headers={"Retry-After": "42"}))
    with pytest.raises(TransientDeliveryError) as raised:
        EmailBackend().send(make_notification("email", "im@example.org"))
    assert raised.value.retry_after == 42


def test_esp_rejecting_the_request_is_permanent(postmark, make_notification):
    postmark.reply(Reply(status=422, body={"ErrorCode": 300, "Message": "Invalid email request"}))
    with pytest.raises(PermanentDeliveryError):
        EmailBackend().send(make_notification("email", "im@example.org"))


# --- Slack ---------------------------------------------------------------------------------------


def test_slack_incoming_webhook(settings, http_sink, make_notification):
    settings.VIGIL_SLACK_BOT_TOKEN = ""
    settings.VIGIL_SLACK_WEBHOOK_URL = f"{http_sink.url}/services/T000/B000/XXXX"
    http_sink.reply(Reply(body="ok", headers={"Content-Type": "text/html"}))
    notification = make_notification("slack", "U0123ABCD")

    SlackBackend().send(notification)

    [request] = http_sink.requests()
    assert request.path == "/services/T000/B000/XXXX"
    assert request.header(KEY_HEADER) == notification.idempotency_key
    payload = request.json()
    assert payload["text"].startswith("<@U0123ABCD>: ")
    assert notification.incident.number in payload["text"]
    buttons = next(b for b in payload["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[0]["url"] == ACK_URL


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply(status=429, body="rate limited", headers={"Retry-After": "7"}), "transient", 7),
        (Reply(status=500, body="oops"), "transient", None),
        (Reply(status=404, body="channel_not_found"), "permanent", None),
        (Reply(status=403, body="invalid_token"), "permanent", None),
    ],
)
def test_slack_webhook_errors(settings, http_sink, make_notification, reply, error, retry_after):
    settings.VIGIL_SLACK_BOT_TOKEN = ""
    settings.VIGIL_SLACK_WEBHOOK_URL = f"{http_sink.url}/hook"
    http_sink.reply(reply)
    expected = TransientDeliveryError if error == "transient" else PermanentDeliveryError
    with pytest.raises(expected) as raised:
        SlackBackend().send(make_notification("slack", "#incidents"))
    if error == "transient":
        assert raised.value.retry_after == retry_after
    # slack-sdk's own retries are off: exactly one request per attempt.
    assert len(http_sink.requests()) == 1


def test_slack_chat_post_message_with_a_bot_token(settings, http_sink, make_notification):
    settings.VIGIL_SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.VIGIL_SLACK_API_URL = f"{http_sink.url}/api/"
    http_sink.reply(Reply(body={"ok": True, "channel": "C0INCIDENT", "ts": "1700000000.000100"}))
    notification = make_notification("slack", "#incidents")

    provider_id = SlackBackend().send(notification)

    [request] = http_sink.requests()
    assert request.path == "/api/chat.postMessage"
    assert request.header("Authorization") == "Bearer xoxb-test-token"
    assert request.header(KEY_HEADER) == notification.idempotency_key
    payload = request.json()
    assert payload["channel"] == "incidents"
    assert payload["metadata"]["event_payload"]["idempotency_key"] == (notification.idempotency_key)
    assert provider_id == "C0INCIDENT:1700000000.000100"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(body={"ok": False, "error": "channel_not_found"}), PermanentDeliveryError),
        (Reply(body={"ok": False, "error": "invalid_auth"}), PermanentDeliveryError),
        (
            Reply(
                status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "3"}
            ),
            TransientDeliveryError,
        ),
        (
            Reply(status=503, body="upstream down", headers={"Content-Type": "text/plain"}),
            TransientDeliveryError,
        ),
    ],
)
def test_slack_web_api_errors(settings, http_sink, make_notification, reply, expected):
    settings.VIGIL_SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.VIGIL_SLACK_API_URL = f"{http_sink.url}/api/"
    http_sink.reply(reply)
    with pytest.raises(expected) as raised:
        SlackBackend().send(make_notification("slack", "U0123ABCD"))
    if reply.status == 429:
        assert raised.value.retry_after == 3
    assert len(http_sink.requests()) == 1


def test_slack_without_configuration_is_permanent(settings, make_notification):
    settings.VIGIL_SLACK_BOT_TOKEN = ""
    settings.VIGIL_SLACK_WEBHOOK_URL = ""
    with pytest.raises(PermanentDeliveryError, match="not configured"):
        SlackBackend().send(make_notification("slack", "#incidents"))


# --- Twilio SMS and voice ------------------------------------------------------------------------


@pytest.fixture
def twilio(settings, http_sink):
    settings.VIGIL_TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000001"
    settings.VIGIL_TWILIO_AUTH_TOKEN = "twilio-secret"
    settings.VIGIL_TWILIO_FROM_NUMBER = "+15005550006"
    settings.VIGIL_TWILIO_MESSAGING_SERVICE_SID = ""
    settings.VIGIL_TWILIO_API_URL = http_sink.url
    settings.VIGIL_TWILIO_STATUS_CALLBACK_URL = "https://vigil.example.org/hooks/twilio/status"
    return http_sink


def test_sms_through_twilio(twilio, make_notification):
    twilio.reply(Reply(status=201, body={"sid": "SM0001", "status": "queued"}))
    notification = make_notification("sms", "+1 (415) 555-0100")

    provider_id = TwilioSmsBackend().send(notification)

    [request] = twilio.requests()
    assert request.path == "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json"
    assert request.header("Authorization").startswith("Basic ")
    assert request.header(KEY_HEADER) == notification.idempotency_key
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    assert form["To"] == "+14155550100"
    assert form["From"] == "+15005550006"
    assert notification.incident.number in form["Body"]
    callback = urlparse(form["StatusCallback"])
    assert parse_qs(callback.query)["vigil_idempotency_key"] == [notification.idempotency_key]
    assert provider_id == "SM0001"


def test_voice_call_through_twilio_says_the_message(twilio, make_notification):
    twilio.reply(Reply(status=201, body={"sid": "CA0001", "status": "queued"}))
    notification = make_notification("phone", "+14155550100")

    provider_id = TwilioVoiceBackend().send(notification)

    [request] = twilio.requests()
    assert request.path.endswith("/Calls.json")
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    assert form["To"] == "+14155550100"
    assert form["Twiml"].startswith("<?xml") or form["Twiml"].startswith("<Response>")
    assert '<Say loop="2">' in form["Twiml"]
    assert notification.incident.number in form["Twiml"]
    assert "http://" not in form["Twiml"]  # links are not read aloud
    assert provider_id == "CA0001"


def test_twilio_invalid_number_is_permanent(twilio, make_notification):
    twilio.reply(
        Reply(
            status=400,
            body={"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400},
        )
    )
    with pytest.raises(PermanentDeliveryError, match="21211"):
        TwilioSmsBackend().send(make_notification("sms", "+15555550100"))


def test_a_malformed_number_is_refused_without_a_request(twilio, make_notification):
    with pytest.raises(PermanentDeliveryError, match=r"E\.164"):
        TwilioSmsBackend().send(make_notification("sms", "call me maybe"))
    assert twilio.requests() == []


def test_twilio_rate_limit_is_transient(twilio, make_notification):
    twilio.reply(
        Reply(
            status=429,
            body={"code": 20429, "message": "Too Many Requests", "status": 429},
            headers={"Retry-After": "5"},
        )
    )
    with pytest.raises(TransientDeliveryError) as raised:
        TwilioVoiceBackend().send(make_notification("phone", "+14155550100"))
    assert raised.value.retry_after == 5


def test_twilio_unconfigured_is_permanent(settings, make_notification):
    settings.VIGIL_TWILIO_ACCOUNT_SID = ""
    with pytest.raises(PermanentDeliveryError, match="not configured"):
        TwilioSmsBackend().send(make_notification("sms", "+14155550100"))


# --- Microsoft Teams -----------------------------------------------------------------------------


def test_teams_adaptive_card(settings, http_sink, make_notification):
    settings.VIGIL_TEAMS_WEBHOOK_URL = f"{http_sink.url}/workflows/default"
    settings.VIGIL_TEAMS_WEBHOOK_URLS = {"exec": f"{http_sink.url}/workflows/exec"}
    http_sink.reply(Reply(status=202, body="", headers={"x-ms-workflow-run-id": "run-1"}))
    notification = make_notification("teams", "exec")

    provider_id = TeamsBackend().send(notification)

    [request] = http_sink.requests()
    assert request.path == "/workflows/exec"
    assert request.header(KEY_HEADER) == notification.idempotency_key
    payload = request.json()
    card = payload["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = [
        run["text"]
        for block in card["content"]["body"]
        if block["type"] == "RichTextBlock"
        for run in block["inlines"]
    ]
    assert notification.subject in texts
    urls = [action["url"] for action in card["content"]["actions"]]
    assert ACK_URL in urls
    assert provider_id == "run-1"


def test_teams_unknown_name_goes_to_the_default_hook(settings, http_sink, make_notification):
    settings.VIGIL_TEAMS_WEBHOOK_URL = f"{http_sink.url}/workflows/default"
    settings.VIGIL_TEAMS_WEBHOOK_URLS = {}
    TeamsBackend().send(make_notification("teams", "https://attacker.example/steal"))
    [request] = http_sink.requests()
    assert request.path == "/workflows/default"


def test_teams_bad_request_is_permanent(settings, http_sink, make_notification):
    settings.VIGIL_TEAMS_WEBHOOK_URL = f"{http_sink.url}/workflows/default"
    http_sink.reply(Reply(status=400, body="Bad payload"))
    with pytest.raises(PermanentDeliveryError, match="HTTP 400"):
        TeamsBackend().send(make_notification("teams", "ops"))


# --- signed outbound webhook ---------------------------------------------------------------------


def test_webhook_is_signed_over_the_raw_body(webhook, make_notification):
    webhook.reply(Reply(body="", headers={"X-Request-Id": "req-9"}))
    notification = make_notification("webhook", "noc")

    provider_id = WebhookBackend().send(notification)

    [request] = webhook.requests()
    assert request.path == "/noc"
    expected = hmac.new(b"s3cret-shared-with-the-receiver", request.body, hashlib.sha256)
    assert request.header("X-Vigil-Signature") == f"sha256={expected.hexdigest()}"
    assert request.header(KEY_HEADER) == notification.idempotency_key
    payload = request.json()
    assert payload["idempotency_key"] == notification.idempotency_key
    assert payload["incident"]["number"] == notification.incident.number
    assert payload["incident"]["url"].endswith(
        f"/admin/incidents/incident/{notification.incident.pk}/change/"
    )
    assert provider_id == "req-9"


def test_webhook_signature_fails_for_a_tampered_body(webhook, make_notification):
    WebhookBackend().send(make_notification("webhook", "noc"))
    [request] = webhook.requests()
    tampered = request.body.replace(b'"event":"notification"', b'"event":"forged"')
    forged = hmac.new(b"s3cret-shared-with-the-receiver", tampered, hashlib.sha256)
    assert request.header("X-Vigil-Signature") != f"sha256={forged.hexdigest()}"


def test_webhook_recipient_cannot_choose_the_url(webhook, make_notification):
    WebhookBackend().send(make_notification("webhook", "http://169.254.169.254/latest/meta-data"))
    [request] = webhook.requests()
    assert request.path == "/vigil"


def test_webhook_without_a_secret_is_not_sent(settings, webhook, make_notification):
    settings.VIGIL_WEBHOOK_SECRET = ""
    with pytest.raises(PermanentDeliveryError, match="VIGIL_WEBHOOK_SECRET"):
        WebhookBackend().send(make_notification("webhook", "noc"))
    assert webhook.requests() == []


@pytest.mark.parametrize(
    ("reply", "expected", "retry_after"),
    [
        (Reply(status=503, headers={"Retry-After": "12"}), TransientDeliveryError, 12),
        (Reply(status=408), TransientDeliveryError, None),
        (Reply(status=429), TransientDeliveryError, None),
        (Reply(status=410), PermanentDeliveryError, None),
        (
            Reply(status=302, headers={"Location": "http://elsewhere.test/"}),
            PermanentDeliveryError,
            None,
        ),
    ],
)
def test_webhook_status_codes(webhook, make_notification, reply, expected, retry_after):
    webhook.reply(reply)
    with pytest.raises(expected) as raised:
        WebhookBackend().send(make_notification("webhook", "noc"))
    if expected is TransientDeliveryError:
        assert raised.value.retry_after == retry_after
    assert len(webhook.requests()) == 1


def test_webhook_receiver_down_is_transient(settings, make_notification):
    settings.VIGIL_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/vigil"
    settings.VIGIL_WEBHOOK_SECRET = "x"
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        WebhookBackend().send(make_notification("webhook", "noc"))


# --- configuration -------------------------------------------------------------------------------


def test_backends_are_chosen_in_settings(settings, make_notification):
    settings.VIGIL_CHANNEL_BACKENDS = {"slack": "escalation.channels.log.LogBackend"}
    assert isinstance(backend_for("slack"), LogBackend)
    assert isinstance(backend_for("webhook"), WebhookBackend)
    notification = make_notification("slack", "#incidents")
    assert backend_for("slack").send(notification) == f"log-{notification.pk}"


def test_external_addresses_are_blocked_in_tests():
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)


def test_a_backend_that_cannot_be_imported_fails_permanently(settings):
    settings.VIGIL_CHANNEL_BACKENDS = {"sms": "escalation.channels.nowhere.Backend"}
    with pytest.raises(PermanentDeliveryError, match="cannot be imported"):
        backend_for("sms")
