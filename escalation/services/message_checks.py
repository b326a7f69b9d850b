"""What the outbox checks before it writes a message: a known channel, a recipient, an
idempotency key, and a context whose email headers, calendar invitation and attachments are
well formed and given to the email channel only. A message that fails raises ValueError and
nothing is written."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

from incidents.models import MessageChannel

__all__ = ["EMAIL_HEADERS", "message_checked"]


# Headers an email notification may carry besides those the channel sets (From, To, Subject,
# Message-ID, the idempotency key): list and threading headers for customer-facing mail.
EMAIL_HEADERS = frozenset(
    {
        "Auto-Submitted",
        "In-Reply-To",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Precedence",
        "References",
        "Reply-To",
        "X-Auto-Response-Suppress",
    }
)


def message_checked(channel: str, recipient: str, key: str, context: dict | None) -> str:
    if channel not in MessageChannel.values:
        raise ValueError(
            f"Unknown notification channel {channel!r}; known: {MessageChannel.values}."
        )
    recipient = (recipient or "").strip()
    if not recipient:
        raise ValueError("A notification needs a recipient.")
    if not key or len(key) > 200:
        raise ValueError("An idempotency key of 1 to 200 characters is required.")
    _check_calendar(channel, context)
    _check_attachments(channel, context)
    headers = (context or {}).get("headers") or {}
    if headers:
        if channel != MessageChannel.EMAIL:
            raise ValueError("Only email notifications carry headers.")
        unknown = sorted(set(headers) - EMAIL_HEADERS)
        if unknown:
            allowed = ", ".join(sorted(EMAIL_HEADERS))
            raise ValueError(f"Headers {unknown} are not allowed; allowed: {allowed}.")
        for name, value in headers.items():
            if not isinstance(value, str) or "\r" in value or "\n" in value or len(value) > 2000:
                raise ValueError(f"Header {name} must be one line of at most 2000 characters.")
    return recipient


# A calendar invitation an email may carry (``context["ics"]``, the iCalendar text, with
# ``context["ics_method"]``): sent as a text/calendar alternative and an invite.ics attachment.
CALENDAR_METHODS = frozenset({"REQUEST", "CANCEL"})
CALENDAR_MAX_LENGTH = 200_000


def _check_calendar(channel: str, context: dict | None) -> None:
    ics = (context or {}).get("ics")
    method = (context or {}).get("ics_method")
    if ics is None and method is None:
        return
    if channel != MessageChannel.EMAIL:
        raise ValueError("Only email notifications carry a calendar invitation.")
    if method not in CALENDAR_METHODS:
        raise ValueError(f"ics_method must be one of {sorted(CALENDAR_METHODS)}.")
    if not isinstance(ics, str) or not ics.startswith("BEGIN:VCALENDAR"):
        raise ValueError("ics must be the text of an iCalendar object (BEGIN:VCALENDAR...).")
    if len(ics) > CALENDAR_MAX_LENGTH:
        raise ValueError(f"ics is limited to {CALENDAR_MAX_LENGTH} characters.")
    if f"\r\nMETHOD:{method}\r\n" not in ics:
        raise ValueError(f"ics must declare METHOD:{method}, as ics_method says.")


# Files an email may carry (``context["attachments"]``): a list of {"filename", "content_type",
# "content_base64"}, attached decoded. The whole file travels in the row's context, so their
# number and size are bounded here, where a sender learns of it, not at the provider.
ATTACHMENTS_MAX = 5
ATTACHMENTS_MAX_BYTES = 10 * 1024 * 1024
ATTACHMENT_FILENAME_MAX = 120
ATTACHMENT_FIELDS = frozenset({"filename", "content_type", "content_base64"})
# type/subtype as RFC 6838 names them; no parameters (the channel adds none).
_CONTENT_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)


def _check_attachments(channel: str, context: dict | None) -> None:
    attachments = (context or {}).get("attachments")
    if attachments is None:
        return
    if channel != MessageChannel.EMAIL:
        raise ValueError("Only email notifications carry attachments.")
    if not isinstance(attachments, list):
        raise ValueError("attachments must be a list of {filename, content_type, content_base64}.")
    if len(attachments) > ATTACHMENTS_MAX:
        raise ValueError(f"At most {ATTACHMENTS_MAX} attachments (got {len(attachments)}).")
    total = 0
    for index, attachment in enumerate(attachments, start=1):
        total += _check_attachment(index, attachment)
        if total > ATTACHMENTS_MAX_BYTES:
            raise ValueError(
                f"Attachments are limited to {ATTACHMENTS_MAX_BYTES // (1024 * 1024)} MB in "
                "total (decoded)."
            )


def _check_attachment(index: int, attachment: object) -> int:
    """The decoded size of one valid attachment; ValueError naming what is wrong."""
    where = f"Attachment {index}"
    if not isinstance(attachment, dict) or set(attachment) != ATTACHMENT_FIELDS:
        raise ValueError(f"{where} must have exactly: {', '.join(sorted(ATTACHMENT_FIELDS))}.")
    filename = attachment["filename"]
    if not isinstance(filename, str) or not filename.strip() or filename.strip(".") == "":
        raise ValueError(f"{where}: filename must be a non-empty name.")
    if len(filename) > ATTACHMENT_FILENAME_MAX:
        raise ValueError(f"{where}: filename is limited to {ATTACHMENT_FILENAME_MAX} characters.")
    if "/" in filename or "\\" in filename:
        raise ValueError(f"{where}: filename must not contain a path separator.")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in filename):
        raise ValueError(
            f"{where}: filename must not contain control or invisible formatting characters."
        )
    content_type = attachment["content_type"]
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"{where}: content_type must be type/subtype, e.g. application/pdf.")
    content = attachment["content_base64"]
    if not isinstance(content, str):
        raise ValueError(f"{where}: content_base64 must be base64 text.")
    # Refuse an oversized file before decoding it.
    if len(content) > (ATTACHMENTS_MAX_BYTES + 2) // 3 * 4:
        raise ValueError(
            f"Attachments are limited to {ATTACHMENTS_MAX_BYTES // (1024 * 1024)} MB in "
            "total (decoded)."
        )
    try:
        return len(base64.b64decode(content, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: content_base64 is not valid base64.") from None
