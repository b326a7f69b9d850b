"""Inbound email as customer reports (§4.1), through django-anymail's inbound webhooks over
HTTP: Postmark's JSON webhook with the basic-auth secret, and Mailgun's signed raw-MIME form.
A message opens an incident or is appended to the one its subject names, once per Message-ID;
bad payloads get a 4xx and write nothing."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from incidents.events import INCIDENT_CREATED
from incidents.models import (
    DetectionSource,
    Incident,
    IncidentEvent,
    IncomingReport,
    Kind,
    Source,
    Status,
    TimelineEntry,
)
from tests.factories import IncidentFactory

POSTMARK = "/anymail/postmark/inbound/"
MAILGUN = "/anymail/mailgun/inbound_mime/"
SECRET = "postmark-inbound:9f2c1e7a-secret"
MAILGUN_KEY = "key-mailgun-signing-0123456789"


def _auth(secret: str = SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def postmark_message(**changes) -> dict:
    """A Postmark inbound webhook body, shaped as in Postmark's documentation."""
    message = {
        "FromName": "Dana Whitfield",
        "MessageStream": "inbound",
        "From": "dana@customer.example",
        "FromFull": {"Email": "dana@customer.example", "Name": "Dana Whitfield", "MailboxHash": ""},
        "To": '"Vigil reports" <reports+support@inbound.vigil.example>',
        "ToFull": [
            {
                "Email": "reports+support@inbound.vigil.example",
                "Name": "Vigil reports",
                "MailboxHash": "support",
            }
        ],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": "reports+support@inbound.vigil.example",
        "Subject": "Checkout fails with error 502",
        "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "ReplyTo": "",
        "MailboxHash": "support",
        "Date": "Mon, 2 Mar 2026 09:41:07 +0000",
        "TextBody": (
            "Hello,\n\nSince about 09:30 every payment ends with 'Bad gateway (502)'.\n"
            "Order 55102 was charged twice.\n\nDana"
        ),
        "HtmlBody": "<html><body><p>Hello,</p><p>Since about 09:30 ...</p></body></html>",
        "StrippedTextReply": "",
        "Tag": "",
        "Headers": [
            {"Name": "Return-Path", "Value": "<dana@customer.example>"},
            {"Name": "X-Spam-Checker-Version", "Value": "SpamAssassin 3.4.6"},
            {"Name": "X-Spam-Status", "Value": "No"},
            {"Name": "X-Spam-Score", "Value": "-0.1"},
            {"Name": "MIME-Version", "Value": "1.0"},
            {"Name": "Message-ID", "Value": "<CAF=abc123.4711@mail.customer.example>"},
        ],
        "Attachments": [],
    }
    message.update(changes)
    return message


def _header(message: dict, name: str, value: str) -> dict:
    message = copy.deepcopy(message)
    message["Headers"] = [h for h in message["Headers"] if h["Name"] != name]
    message["Headers"].append({"Name": name, "Value": value})
    return message


@pytest.fixture
def inbound(settings, db):
    settings.VIGIL_INBOUND_EMAIL_PROVIDER = "postmark"
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    settings.DEFAULT_FROM_EMAIL = "Vigil <vigil@vigil.example>"
    client = Client()

    def post(payload, *, raw: str | None = None, auth: dict | None = None, **extra):
        body = raw if raw is not None else json.dumps(payload)
        headers = _auth() if auth is None else auth
        return client.post(POSTMARK, body, content_type="application/json", **headers, **extra)

    return post


def _email_notes(incident: Incident) -> list[TimelineEntry]:
    return list(
        TimelineEntry.objects.filter(incident=incident, source=Source.EMAIL, kind=Kind.NOTE)
    )


def _counts() -> tuple[int, int, int]:
    return Incident.objects.count(), TimelineEntry.objects.count(), IncomingReport.objects.count()


# --- a new report --------------------------------------------------------------------------------


def test_an_email_opens_a_customer_report_incident_with_the_sender_recorded(inbound):
    response = inbound(postmark_message())

    assert response.status_code == 200
    incident = Incident.objects.get()
    assert incident.detection_source == DetectionSource.CUSTOMER_REPORT
    assert incident.title == "Checkout fails with error 502"
    assert incident.summary == (
        "Hello,\n\nSince about 09:30 every payment ends with 'Bad gateway (502)'.\n"
        "Order 55102 was charged twice.\n\nDana"
    )
    assert incident.severity_id == 3
    report = IncomingReport.objects.get()
    assert (report.reporter_name, report.reporter_email, report.channel, report.kind) == (
        "Dana Whitfield",
        "dana@customer.example",
        Source.EMAIL,
        "customer_report",
    )
    assert report.message_id == "<CAF=abc123.4711@mail.customer.example>"
    assert report.opened_incident and report.submitted_by is None
    (note,) = _email_notes(incident)
    assert note.actor is None
    assert note.message.startswith(
        "Customer report from Dana Whitfield <dana@customer.example>, received by email "
        "(opened this incident)."
    )
    assert [
        (e.incident, e.name, e.payload, e.actor, e.source) for e in IncidentEvent.objects.all()
    ] == [(incident, INCIDENT_CREATED, {"paging": "team"}, None, Source.EMAIL)]


def test_a_redelivered_email_is_taken_once(inbound):
    payload = postmark_message()
    assert inbound(payload).status_code == 200
    before = _counts()
    for _ in range(3):
        assert inbound(payload).status_code == 200
    assert _counts() == before == (1, before[1], 1)


def test_without_a_message_id_header_the_providers_id_deduplicates(inbound):
    payload = postmark_message()
    payload["Headers"] = [h for h in payload["Headers"] if h["Name"] != "Message-ID"]
    inbound(payload)
    inbound(payload)
    assert Incident.objects.count() == 1
    assert (
        IncomingReport.objects.get().message_id == "postmark:73e6d360-66eb-11e1-8e72-a8904824019b"
    )


# --- appending to an incident ------------------------------------------------------------------


@pytest.mark.parametrize("status", ["open", "investigating", "monitoring", "resolved"])
def test_a_subject_naming_an_incident_appends_the_reply_once(inbound, status):
    existing = IncidentFactory(status=status, title="Checkout errors")
    payload = postmark_message(
        Subject=f"Re: [{existing.number.lower()}] Checkout errors",
        TextBody="Still broken here.\n\nOn Mon, Vigil wrote:\n> We are investigating.",
        StrippedTextReply="Still broken here.",
        Headers=[{"Name": "Message-ID", "Value": "<reply-1@mail.customer.example>"}],
    )
    assert inbound(payload).status_code == 200
    assert inbound(payload).status_code == 200

    assert Incident.objects.count() == 1
    (note,) = _email_notes(existing)
    assert "(appended to this incident)" in note.message
    assert f"Subject: Re: [{existing.number.lower()}] Checkout errors" in note.message
    assert note.message.endswith("Still broken here.")
    assert "We are investigating" not in note.message
    report = IncomingReport.objects.get()
    assert (report.incident, report.opened_incident) == (existing, False)


@pytest.mark.parametrize("status", ["closed", "cancelled"])
def test_a_subject_naming_a_finished_incident_opens_a_new_one(inbound, status):
    old = IncidentFactory(status=status)
    assert inbound(postmark_message(Subject=f"Re: {old.number} is back")).status_code == 200
    new = Incident.objects.exclude(pk=old.pk).get()
    assert new.summary.startswith(
        f"The reporter's subject refers to {old.number}, which is {Status(status).label.lower()}"
    )
    assert not _email_notes(old)


def test_a_subject_naming_an_unknown_incident_opens_a_new_one(inbound):
    inbound(postmark_message(Subject="Re: INC-2020-0101-001 again"))
    assert Incident.objects.get().title == "Re: INC-2020-0101-001 again"


# --- content shaping ---------------------------------------------------------------------------


def test_html_only_mail_is_reduced_to_text_and_sizes_are_capped(inbound):
    html = (
        "<html><head><style>p {color: red}</style><title>t</title></head><body>"
        "<p>Our <b>dashboard</b> shows &lt;nothing&gt; &amp; errors.</p>"
        "<script>alert('x')</script><div>Second&nbsp;line</div>"
        + "<p>more</p>" * 4000
        + "</body></html>"
    )
    inbound(postmark_message(TextBody="", HtmlBody=html, Subject="S" * 500))
    incident = Incident.objects.get()
    assert incident.summary.startswith("Our dashboard shows <nothing> & errors.\n\nSecond line")
    assert "alert(" not in incident.summary and "color: red" not in incident.summary
    assert "<p>" not in incident.summary
    assert len(incident.summary) <= 10_000
    assert incident.summary.endswith("[… message truncated by Vigil]")
    assert len(incident.title) == 200


def test_a_subject_only_mail_uses_the_subject_as_description(inbound):
    inbound(postmark_message(TextBody="", HtmlBody="", Subject="Login page is blank"))
    incident = Incident.objects.get()
    assert (incident.title, incident.summary) == ("Login page is blank", "Login page is blank")


@pytest.mark.parametrize(
    "payload",
    [
        _header(postmark_message(), "Auto-Submitted", "auto-replied"),
        _header(postmark_message(), "Precedence", "bulk"),
        _header(postmark_message(), "X-Autoreply", "yes"),
        _header(postmark_message(), "X-Spam-Status", "Yes"),
        postmark_message(
            Headers=[{"Name": "Return-Path", "Value": "<>"}, *postmark_message()["Headers"][1:]]
        ),
        postmark_message(
            FromFull={"Email": "vigil@vigil.example", "Name": "Vigil", "MailboxHash": ""}
        ),
    ],
    ids=["auto-reply", "bulk", "x-autoreply", "spam", "bounce", "own-address"],
)
def test_automatic_and_looping_mail_is_dropped_quietly(inbound, payload):
    assert inbound(payload).status_code == 200
    assert _counts() == (0, 0, 0)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "auth"),
    [
        pytest.param(json.dumps(postmark_message()), {}, id="no-auth"),
        pytest.param(
            json.dumps(postmark_message()), _auth("postmark-inbound:wrong"), id="bad-auth"
        ),
        pytest.param('{"FromFull": {"Email": "dana@', None, id="malformed-json"),
        pytest.param("[1, 2, 3]", None, id="json-list"),
        pytest.param(
            json.dumps({"RecordType": "Bounce", "Email": "x@example.com"}), None, id="tracking"
        ),
        pytest.param(json.dumps(postmark_message(FromFull=None, From="")), None, id="no-sender"),
        pytest.param(
            json.dumps(
                postmark_message(
                    FromFull={"Email": "not-an-address", "Name": "", "MailboxHash": ""}
                )
            ),
            None,
            id="sender-without-domain",
        ),
        pytest.param(
            json.dumps(postmark_message(Subject="", TextBody="", HtmlBody="  ")),
            None,
            id="empty-message",
        ),
        pytest.param(
            json.dumps(
                postmark_message(Attachments=[{"Name": "a.txt", "ContentType": "text/plain"}])
            ),
            None,
            id="attachment-without-content",
        ),
    ],
)
def test_bad_payloads_get_a_400_and_write_nothing(inbound, body, auth):
    IncidentFactory(title="Checkout errors")
    before = _counts()
    response = inbound(None, raw=body, auth=auth)
    assert response.status_code == 400
    assert _counts() == before


def test_inbound_email_is_refused_until_a_webhook_secret_is_set(inbound, settings):
    settings.ANYMAIL = {}
    response = inbound(postmark_message(), auth={})
    assert response.status_code == 400
    assert _counts() == (0, 0, 0)


def test_only_post_is_accepted(inbound):
    client = Client()
    assert client.get(POSTMARK, **_auth()).status_code == 405
    assert client.head(POSTMARK, **_auth()).status_code == 200  # providers' URL check


# --- Mailgun: signed, raw MIME -----------------------------------------------------------------

RAW_MIME = (
    "From: =?utf-8?q?J=C3=B6rg_Status?= <jorg@partner.example>\r\n"
    "To: reports@inbound.vigil.example\r\n"
    "Subject: =?utf-8?q?Webhook_deliveries_delayed_=E2=80=93_INC?=\r\n"
    "Message-ID: <mg-77@partner.example>\r\n"
    "Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: text/html; charset="utf-8"\r\n'
    "\r\n"
    "<p>Deliveries to your endpoint are <em>delayed</em> by 20&nbsp;minutes.</p>\r\n"
)


def _mailgun_form(key: str = MAILGUN_KEY) -> dict[str, str]:
    timestamp, token = str(int(time.time())), "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "recipient": "reports@inbound.vigil.example",
        "sender": "jorg@partner.example",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
        "body-mime": RAW_MIME,
    }


@pytest.fixture
def mailgun(inbound, settings):
    settings.VIGIL_INBOUND_EMAIL_PROVIDER = "mailgun"


def test_mailgun_raw_mime_opens_an_incident(mailgun):
    response = Client().post(MAILGUN, _mailgun_form(), **_auth())
    assert response.status_code == 200
    incident = Incident.objects.get()
    assert incident.title == "Webhook deliveries delayed – INC"
    assert incident.summary == "Deliveries to your endpoint are delayed by 20 minutes."
    report = IncomingReport.objects.get()
    assert (report.reporter_name, report.reporter_email, report.message_id) == (
        "Jörg Status",
        "jorg@partner.example",
        "<mg-77@partner.example>",
    )


def test_mailgun_with_a_wrong_signature_is_refused(mailgun):
    response = Client().post(MAILGUN, _mailgun_form(key="key-someone-else"), **_auth())
    assert response.status_code == 400
    assert _counts() == (0, 0, 0)


# --- the same message delivered twice at the same moment (PostgreSQL) ----------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.timeout(120)
def test_concurrent_redeliveries_open_one_incident(settings):
    settings.VIGIL_INBOUND_EMAIL_PROVIDER = "postmark"
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    body = json.dumps(postmark_message())
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=10)
            response = Client().post(POSTMARK, body, content_type="application/json", **_auth())
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [200, 200, 200, 200]
    assert Incident.objects.count() == 1
    assert IncomingReport.objects.count() == 1
    assert len(_email_notes(Incident.objects.get())) == 1


# --- only the configured provider's inbound endpoint is mounted ----------------------------------


def _anymail_paths() -> list[tuple[str, str]]:
    """(esp, path) of every webhook URL django-anymail defines, inbound and tracking."""
    from anymail import urls as anymail_urls

    paths = []
    for pattern in anymail_urls.urlpatterns:
        route = str(pattern.pattern).lstrip("^").rstrip("$")
        if route.startswith("mailgun/inbound"):
            paths += [("mailgun", "mailgun/inbound/"), ("mailgun", "mailgun/inbound_mime/")]
        else:
            paths.append((route.split("/")[0], route))
    return [(esp, f"/anymail/{route}") for esp, route in paths]


ANYMAIL_PATHS = _anymail_paths()


@pytest.mark.parametrize("provider", ["", "postmark"])
def test_endpoints_of_providers_not_configured_answer_404(settings, db, provider, caplog):
    settings.VIGIL_INBOUND_EMAIL_PROVIDER = provider
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    client = Client(raise_request_exception=False)
    others = [path for esp, path in ANYMAIL_PATHS if esp != provider]
    assert len(others) >= 25
    for path in others:
        responses = {
            "GET": client.get(path, **_auth()),
            "POST": client.post(path, "{}", content_type="application/json", **_auth()),
        }
        for method, response in responses.items():
            assert response.status_code == 404, (method, path, response.status_code)
    assert _counts() == (0, 0, 0)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_the_configured_providers_tracking_endpoint_is_not_mounted(inbound):
    response = Client().post(
        "/anymail/postmark/tracking/", "{}", content_type="application/json", **_auth()
    )
    assert response.status_code == 404
