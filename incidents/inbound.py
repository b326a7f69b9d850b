"""Inbound email (§4.1 customer reports) through django-anymail's inbound webhooks.

The ESP (Postmark, Mailgun, SendGrid, ... see ``incidents.inbound_urls``) posts each message
received at the reports address to ``/anymail/<esp>/inbound/``, authenticated with the
``ANYMAIL_WEBHOOK_SECRET`` basic-auth credentials (and the ESP's signature where it has one).
Anymail turns it into an ``inbound`` signal, and :func:`inbound_email_receive` into a report:

* a subject naming an incident (``INC-YYYY-MMDD-XXX``) that is still open, in progress or
  resolved appends the message to its timeline; otherwise a new incident is opened (detection
  source customer report, the subject as title, the text body as summary), and a subject
  naming a closed or cancelled incident says so in the new incident's summary;
* the sender is the reporter (on the timeline and on the :class:`IncomingReport`);
* a message is taken once, by its Message-ID: a redelivered webhook changes nothing;
* HTML-only messages are reduced to their text; subject and body are capped;
* auto-replies, bounces, messages flagged as spam by the ESP and mail from Vigil's own sender
  address are dropped (logged), so Vigil's notifications cannot loop back as incidents;
* a message without a usable sender, or without subject and text, is refused with 400 and
  nothing is written (so is a payload the ESP view cannot parse: see ``inbound_urls``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from email.utils import parseaddr
from html.parser import HTMLParser
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation

from .errors import InvalidInput
from .models import Incident, ReportKind, Source, Status
from .services.reports import DESCRIPTION_MAX, ReportOutcome, report_submit

logger = logging.getLogger(__name__)

INCIDENT_ID_IN_TEXT = re.compile(r"\bINC-\d{4}-\d{4}-\d{3,}\b", re.IGNORECASE)
SUBJECT_MAX = 200
TRUNCATED = "\n\n[… message truncated by Vigil]"
AUTOMATIC_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}


class InboundRefused(SuspiciousOperation):
    """An inbound message Vigil cannot take. Django answers a SuspiciousOperation with 400
    (and logs it on the ``django.security`` logger); the transaction writes nothing."""


def inbound_email_receive(*, event: Any, esp_name: str) -> ReportOutcome | None:
    """Take one inbound message as a customer report (rules in the module docstring).

    Returns the outcome, or ``None`` for a message dropped on purpose. Raises
    :class:`InboundRefused` for a message that cannot be a report. Idempotent by Message-ID.
    """
    message = getattr(event, "message", None)
    if message is None:
        raise InboundRefused(f"{esp_name} inbound event without a message.")
    sender = message.from_email
    if isinstance(sender, list):
        sender = sender[0] if sender else None
    address = getattr(sender, "addr_spec", "") or ""
    if not address or "@" not in address:
        raise InboundRefused(f"{esp_name} inbound message without a sender address.")

    reason = _dropped_because(message, address)
    if reason:
        logger.info("Inbound email from %s dropped: %s.", address, reason)
        return None

    subject = " ".join((message.subject or "").split())
    body = _body(message)
    if not subject and not body:
        raise InboundRefused(f"{esp_name} inbound message from {address} has no subject or text.")
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 1] + "…"

    incident, note = _referenced_incident(subject)
    if incident is not None:
        # A reply carries the whole thread below it; the ESP's reply-only text, when it
        # gives one, is what the sender added.
        stripped = _cap((message.stripped_text or "").strip())
        body = stripped or body
    try:
        outcome = report_submit(
            actor=None,
            source=Source.EMAIL,
            kind=ReportKind.CUSTOMER_REPORT,
            description=body or subject,
            reporter_name=getattr(sender, "display_name", "") or "",
            reporter_email=address,
            title=subject or f"Customer report from {address}",
            incident=incident,
            message_id=_message_id(message, event, esp_name, address, subject, body),
            summary_note=note,
        )
    except InvalidInput as exc:
        raise InboundRefused(f"{esp_name} inbound message from {address}: {exc.message}") from exc
    if outcome.duplicate:
        logger.info(
            "Inbound email %s already taken (%s); nothing done.",
            outcome.report.message_id,
            outcome.incident.number,
        )
    else:
        logger.info(
            "Inbound email from %s %s %s.",
            address,
            "opened" if outcome.opened else "was appended to",
            outcome.incident.number,
        )
    return outcome


def _dropped_because(message: Any, address: str) -> str:
    auto = (message.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return "an auto-reply"
    if (message.get("Precedence") or "").strip().lower() in AUTOMATIC_PRECEDENCE:
        return f"Precedence: {message.get('Precedence').strip()}"
    if message.envelope_sender == "":
        return "a bounce (empty return path)"
    if message.spam_detected:
        return "flagged as spam by the email provider"
    own = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].lower()
    if own and address.lower() == own:
        return "sent by Vigil itself"
    return ""


def _body(message: Any) -> str:
    text = message.text
    if not (text and text.strip()) and message.html:
        text = html_to_text(message.html)
    return _cap((text or "").replace("\r\n", "\n").strip())


def _cap(text: str) -> str:
    if len(text) <= DESCRIPTION_MAX:
        return text
    return text[: DESCRIPTION_MAX - len(TRUNCATED)].rstrip() + TRUNCATED


def _referenced_incident(subject: str) -> tuple[Incident | None, str]:
    """The incident to append to, and otherwise a note for the new incident's summary."""
    for match in INCIDENT_ID_IN_TEXT.finditer(subject):
        number = match.group(0).upper()
        incident = Incident.objects.filter(number=number).first()
        if incident is None:
            continue
        if incident.status in (Status.CLOSED, Status.CANCELLED):
            return None, (
                f"The reporter's subject refers to {number}, which is "
                f"{incident.get_status_display().lower()}; this report opened a new incident."
            )
        return incident, ""
    return None, ""


def _message_id(
    message: Any, event: Any, esp_name: str, address: str, subject: str, body: str
) -> str:
    """The Message-ID header; else the ESP's own message id; else a digest of the message.
    Long values are hashed so they fit the column and stay unique."""
    value = " ".join((message.get("Message-ID") or "").split())
    if not value and getattr(event, "event_id", None):
        value = f"{esp_name.lower()}:{event.event_id}"
    if not value:
        date = message.get("Date") or ""
        digest = hashlib.sha256(f"{address}\n{date}\n{subject}\n{body}".encode()).hexdigest()
        value = f"sha256:{digest}"
    if len(value) > 255:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


class _TextExtractor(HTMLParser):
    """The readable text of an HTML body: tags dropped, script and style content skipped,
    block elements on their own lines, entities decoded."""

    BLOCKS = {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "table",
        "ul",
        "ol",
        "hr",
    }
    SKIPPED = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML email body (it is stored and shown as text, never as HTML)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


__all__ = ["InboundRefused", "html_to_text", "inbound_email_receive"]
