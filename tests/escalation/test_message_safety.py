"""What reaches each receiving client when an incident's title is hostile, and the acknowledge
buttons of the chat channels.

An incident's title comes from any alert sender or API user. Every page about it is written by
the real paging code and then delivered by the real channel backend to a local server (or
Django's mail outbox); the assertions are about the bytes that server received."""

from __future__ import annotations

import email
import json
import xml.etree.ElementTree as ET
from email import policy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core import mail

from escalation.channels.email import EmailBackend
from escalation.channels.slack import SlackBackend
from escalation.channels.teams import TeamsBackend
from escalation.channels.twilio import TwilioSmsBackend, TwilioVoiceBackend
from escalation.channels.webhook import WebhookBackend
from escalation.models import AckLinkUse, Notification
from escalation.services import ack_link_read, notification_enqueue
from incidents.models import Incident, SeverityLevel, Source, Status
from incidents.services import incident_create
from tests import workers
from tests.escalation import escalation_fixtures
from tests.escalation.channel_fixtures import free_port
from tests.escalation.escalation_fixtures import T0, TEAM
from tests.events import followed
from tests.workers import Reply

http_sink = workers.http_sink
no_external_network = workers.no_external_network
reachable_policy = escalation_fixtures.reachable_policy

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

HOSTILE = "<!channel> <@U123> <https://evil.example|Acknowledge> & *x* [Acknowledge](https://evil.example)"
# What may never arrive unescaped in a chat client's text: a ping of the whole channel, a
# mention, a link dressed up as Vigil's own acknowledge button.
SLACK_MARKUP = ("<!channel>", "<@U123>", "<https://evil.example")


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def page_everyone(title: str = HOSTILE) -> Incident:
    """A Sev 1 incident whose team is paged on every channel there is."""
    severity = SeverityLevel.objects.get(level=1)
    severity.notification_channels = ["phone", "sms", "slack", "email", "teams", "webhook"]
    severity.save()
    create = followed(incident_create)
    return create(actor=None, source=Source.SYSTEM, severity=1, title=title)


def row(incident: Incident, channel: str, policy_: Any = None) -> Notification:
    rows = incident.notifications.filter(channel=channel)
    if policy_ is not None:
        rows = rows.filter(contact=policy_.primary[TEAM[0]])
    return rows.get()


def texts(value: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, string) of a JSON document, at any depth."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += texts(v, k)
    elif isinstance(value, list):
        for v in value:
            found += texts(v, key)
    elif isinstance(value, str):
        found.append((key, value))
    return found


def assert_a_signed_link_without_secret_in_the_address(url: str, notification: Notification):
    parts = urlsplit(url)
    assert parts.path == "/ack/" and not parts.query
    payload = ack_link_read(parts.fragment)
    assert payload["i"] == notification.incident_id
    assert payload["ch"] == notification.channel
    assert payload["n"] == notification.context["ack_nonce"]


# --- Slack ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["webhook", "bot"])
def test_slack_gets_the_title_escaped_and_a_signed_acknowledge_button(
    settings, http_sink, reachable_policy, frozen, mode
):
    if mode == "webhook":
        settings.VIGIL_SLACK_BOT_TOKEN = ""
        settings.VIGIL_SLACK_WEBHOOK_URL = f"{http_sink.url}/services/T0/B0/X"
        http_sink.reply(Reply(body="ok", headers={"Content-Type": "text/html"}))
    else:
        settings.VIGIL_SLACK_BOT_TOKEN = "xoxb-test"
        settings.VIGIL_SLACK_API_URL = f"{http_sink.url}/api/"
        http_sink.reply(Reply(body={"ok": True, "channel": "D1", "ts": "1.2"}))
    incident = page_everyone()
    notification = row(incident, "slack", reachable_policy)

    SlackBackend().send(notification)

    [request] = http_sink.requests()
    payload = request.json()
    strings = texts(payload)
    for key, value in strings:
        for markup in SLACK_MARKUP:
            assert markup not in value, f"{markup!r} arrived unescaped in {key}: {value!r}"
    section = next(b for b in payload["blocks"] if b["type"] == "section")["text"]
    assert section["type"] == "mrkdwn"
    # No automatic parsing of mentions, channel names or URLs in what the title can reach.
    assert section["verbatim"] is True
    escaped = "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|Acknowledge&gt; &amp; *x*"
    assert escaped in section["text"]
    assert escaped in payload["text"]

    buttons = next(b for b in payload["blocks"] if b["type"] == "actions")["elements"]
    ack = next(b for b in buttons if b["text"]["text"] == "Acknowledge")
    assert ack["type"] == "button"
    assert ack["url"] == notification.ack_url
    assert_a_signed_link_without_secret_in_the_address(ack["url"], notification)
    assert {b["url"] for b in buttons} == {
        notification.ack_url,
        settings.VIGIL_BASE_URL + incident.get_absolute_url(),
    }


def test_the_slack_button_acknowledges_as_the_person_paged(
    client, settings, http_sink, reachable_policy, frozen
):
    settings.VIGIL_SLACK_BOT_TOKEN = ""
    settings.VIGIL_SLACK_WEBHOOK_URL = f"{http_sink.url}/hook"
    incident = page_everyone()
    notification = row(incident, "slack", reachable_policy)
    SlackBackend().send(notification)
    [request] = http_sink.requests()
    button = next(b for b in request.json()["blocks"] if b["type"] == "actions")["elements"][0]
    url = urlsplit(button["url"])

    response = client.post(url.path, {"token": url.fragment, "confirm": "1"})

    assert response.status_code == 200
    incident.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED
    use = AckLinkUse.objects.get()
    assert (use.user, use.channel) == (reachable_policy.primary[TEAM[0]].user, "slack")


# --- Microsoft Teams -----------------------------------------------------------------------------


def test_teams_gets_the_title_as_plain_text_never_as_markdown(
    settings, http_sink, reachable_policy, frozen
):
    settings.VIGIL_TEAMS_WEBHOOK_URL = f"{http_sink.url}/workflows/default"
    incident = page_everyone()

    TeamsBackend().send(row(incident, "teams"))

    [request] = http_sink.requests()
    card = request.json()["attachments"][0]["content"]
    # TextBlock texts and fact titles and values are Markdown in Teams; TextRun texts are not.
    markdown = [
        value
        for element in card["body"]
        if element["type"] in ("TextBlock", "FactSet")
        for _, value in texts(element)
    ]
    for value in markdown:
        assert "[Acknowledge](https://evil.example)" not in value
        assert "*x*" not in value
    runs = [
        run["text"]
        for element in card["body"]
        if element["type"] == "RichTextBlock"
        for run in element["inlines"]
    ]
    assert any(HOSTILE in text for text in runs)
    # A page to a Teams channel acknowledges nobody: it reaches everyone in the channel, so a
    # signed link there would let any of them acknowledge as the person it names.
    assert [a["title"] for a in card["actions"]] == ["Open incident"]
    assert card["actions"][0]["url"] == settings.VIGIL_BASE_URL + incident.get_absolute_url()


def test_a_teams_message_with_an_acknowledge_link_gets_the_button(settings, http_sink, incident):
    settings.VIGIL_TEAMS_WEBHOOK_URL = f"{http_sink.url}/workflows/default"
    link = "https://vigil.example.com/ack/#signed-token"
    notification = notification_enqueue(
        incident=incident,
        channel="teams",
        recipient="oncall",
        subject="Sev 1 *incident*",
        body="Checkout [is](https://evil.example) down",
        template="page",
        reason="Paged",
        idempotency_key="teams:ack-button",
        ack_url=link,
    )

    TeamsBackend().send(notification)

    [request] = http_sink.requests()
    card = request.json()["attachments"][0]["content"]
    ack = next(a for a in card["actions"] if a["title"] == "Acknowledge")
    assert ack == {"type": "Action.OpenUrl", "title": "Acknowledge", "url": link}


# --- SMS and voice -------------------------------------------------------------------------------


@pytest.fixture
def twilio(settings, http_sink):
    settings.VIGIL_TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000001"
    settings.VIGIL_TWILIO_AUTH_TOKEN = "twilio-secret"
    settings.VIGIL_TWILIO_FROM_NUMBER = "+15005550006"
    settings.VIGIL_TWILIO_MESSAGING_SERVICE_SID = ""
    settings.VIGIL_TWILIO_API_URL = http_sink.url
    settings.VIGIL_TWILIO_STATUS_CALLBACK_URL = ""
    http_sink.reply(Reply(status=201, body={"sid": "CA1", "status": "queued"}))
    return http_sink


def test_a_call_says_a_hostile_title_and_does_nothing_else(twilio, reachable_policy, frozen):
    incident = page_everyone("DB down</Say><Dial>+19005550100</Dial><Say>")

    TwilioVoiceBackend().send(row(incident, "phone", reachable_policy))

    [request] = twilio.requests()
    twiml = parse_qs(request.body.decode())["Twiml"][0]
    assert "<Dial>" not in twiml
    response = ET.fromstring(twiml)
    assert response.tag == "Response"
    assert [child.tag for child in response] == ["Say"]
    assert "DB down</Say><Dial>+19005550100</Dial><Say>" in response[0].text


def test_an_sms_carries_the_title_as_text_and_the_link_without_its_secret_in_the_path(
    twilio, reachable_policy, frozen
):
    incident = page_everyone()
    notification = row(incident, "sms", reachable_policy)

    TwilioSmsBackend().send(notification)

    [request] = twilio.requests()
    body = parse_qs(request.body.decode())["Body"][0]
    assert "<!channel> <@U123>" in body  # plain text: shown, never interpreted
    link = body.rsplit("Ack: ", 1)[1].split()[0]
    assert link == notification.ack_url
    assert_a_signed_link_without_secret_in_the_address(link, notification)


# --- email and the outbound webhook --------------------------------------------------------------


def test_email_carries_the_title_as_plain_text(settings, reachable_policy, frozen):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    incident = page_everyone()
    notification = row(incident, "email", reachable_policy)

    EmailBackend().send(notification)

    [sent] = mail.outbox
    message = email.message_from_bytes(sent.message().as_bytes(), policy=policy.default)
    assert message.get_content_type() == "text/plain"  # no HTML part to escape into
    assert HOSTILE in message["Subject"]
    assert HOSTILE in message.get_content()
    link = message.get_content().split("Acknowledge (one click, then confirm): ", 1)[1].split()[0]
    assert link == notification.ack_url
    assert_a_signed_link_without_secret_in_the_address(link, notification)


class _Smtp:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def test_an_email_subject_cannot_add_headers_or_recipients(settings, incident):
    from aiosmtpd.controller import Controller

    handler = _Smtp()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
        settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = (
            False,
            "",
            "",
        )
        notification = notification_enqueue(
            incident=incident,
            channel="email",
            recipient="im@example.org",
            subject="Checkout down\r\nBcc: attacker@evil.example\r\nX-Injected: yes",
            body="Checkout is down.",
            template="page",
            reason="Paged",
            idempotency_key="email:crlf",
        )

        EmailBackend().send(notification)
    finally:
        controller.stop()
        import asyncio

        asyncio.set_event_loop(asyncio.new_event_loop())

    [(recipients, raw)] = handler.messages
    assert recipients == ["im@example.org"]
    received = email.message_from_bytes(raw, policy=policy.default)
    assert received["Subject"] == ("Checkout down Bcc: attacker@evil.example X-Injected: yes")
    assert received["Bcc"] is None and received["X-Injected"] is None


def test_the_outbound_webhook_carries_the_title_exactly_as_json(
    settings, http_sink, reachable_policy, frozen
):
    settings.VIGIL_WEBHOOK_URL = f"{http_sink.url}/hook"
    settings.VIGIL_WEBHOOK_SECRET = "secret"
    incident = page_everyone()

    WebhookBackend().send(row(incident, "webhook"))

    [request] = http_sink.requests()
    payload = json.loads(request.body)
    assert payload["incident"]["title"] == HOSTILE
    assert HOSTILE in payload["body"]
