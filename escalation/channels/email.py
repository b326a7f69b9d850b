"""Email through Django's mail API: any django-anymail ESP in production, SMTP, console in
development, locmem in tests (``DJANGO_EMAIL_BACKEND``).

The idempotency key travels as anymail ``metadata`` (stored by the ESP with the message and
returned in its webhooks), as an ``X-Vigil-Idempotency-Key`` header, and as a Message-ID derived
from it: every attempt to send one notification is the same message, which mail clients and
archives that deduplicate by Message-ID show once.

Paging messages are plain text, so there is nothing to escape in the body; an ``html``
alternative given in the context (customer-facing mail) is sent as given, and whoever renders it
must autoescape. A calendar invitation in the context (``ics``, ``ics_method``, checked at
enqueue) travels as a ``text/calendar; method=...; charset=utf-8`` alternative and an
``invite.ics`` attachment. Files in the context (``attachments``: name, type and base64 content,
checked at enqueue: at most 5, 10 MB in all) are attached decoded, with their name and type.
The context's ``headers`` (list and threading headers, checked against
``escalation.outbox.EMAIL_HEADERS`` when the row is written) are added to the message. The
subject is one line: line breaks in it become spaces, so it can never start
a header of its own.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import smtplib
from email.utils import parseaddr
from typing import TYPE_CHECKING

from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailRecipientsRefused,
)
from django.core.exceptions import ValidationError
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection
from django.core.validators import validate_email

from .base import IDEMPOTENCY_HEADER, setting
from .errors import PermanentDeliveryError, TransientDeliveryError, http_error

if TYPE_CHECKING:
    from ..models import Notification


def message_id(key: str) -> str:
    domain = _domain(setting("DEFAULT_FROM_EMAIL", ""))
    return f"<vigil.{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


@functools.lru_cache(maxsize=8)
def _domain(sender: str) -> str:
    # Parsed once per sender: a mailing derives ten thousand Message-IDs in one go.
    return parseaddr(sender)[1].rpartition("@")[2] or "vigil.invalid"


def _smtp_error(exc: smtplib.SMTPException) -> PermanentDeliveryError | TransientDeliveryError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = f"Mail server refused the recipient: {exc.recipients}"
        if codes and all(400 <= code < 500 for code in codes):
            return TransientDeliveryError(detail)
        return PermanentDeliveryError(detail)
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = f"Mail server answered {exc.smtp_code}: {exc.smtp_error!r}"
        if 400 <= exc.smtp_code < 500:
            return TransientDeliveryError(detail)
        return PermanentDeliveryError(detail)
    return TransientDeliveryError(f"Mail server: {exc}")


class _EmailMessage(EmailMultiAlternatives):
    """Django's message, with MIME parameters after a part's type ("text/calendar;
    method=REQUEST") set on the part, which Django's own parts cannot carry."""

    def _create_mime_attachment(self, content, mimetype):  # type: ignore[no-untyped-def]
        mimetype, *params = (part.strip() for part in mimetype.split(";"))
        attachment = super()._create_mime_attachment(content, mimetype)
        for param in params:
            name, _, value = param.partition("=")
            attachment.set_param(name.strip(), value.strip())
        return attachment


def _attachments(notification: Notification) -> list[tuple[str, bytes, str]]:
    """The context's files, decoded. They were checked when the row was written; a row that no
    longer decodes fails for good rather than going out without its file."""
    files = []
    for attachment in (notification.context or {}).get("attachments") or []:
        try:
            content = base64.b64decode(attachment["content_base64"], validate=True)
            files.append((attachment["filename"], content, attachment["content_type"]))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise PermanentDeliveryError(f"An attachment cannot be read: {exc!r}") from exc
    return files


class EmailBackend:
    def send(self, notification: Notification) -> str:
        address = notification.recipient
        try:
            validate_email(address)
        except ValidationError as exc:
            raise PermanentDeliveryError(f"{address!r} is not an email address.") from exc
        msgid = message_id(notification.idempotency_key)
        message = _EmailMessage(
            subject=" ".join((notification.subject or notification.reason).split()),
            body=notification.body,
            to=[address],
            headers={
                # List and threading headers of customer-facing mail (checked at enqueue).
                **((notification.context or {}).get("headers") or {}),
                IDEMPOTENCY_HEADER: notification.idempotency_key,
                "Message-ID": msgid,
            },
            connection=get_connection(fail_silently=False),
        )
        html = (notification.context or {}).get("html")
        if html:
            message.attach_alternative(html, "text/html")
        ics = (notification.context or {}).get("ics")
        if ics:
            # A calendar invitation (checked at enqueue): the text/calendar alternative that
            # mail clients show as an invitation with its buttons, and the same file as an
            # attachment for those that only import one.
            calendar_type = f"text/calendar; method={notification.context['ics_method']}"
            message.attach_alternative(ics, calendar_type)
            message.attach("invite.ics", ics.encode("utf-8"), "application/ics")
        for filename, content, content_type in _attachments(notification):
            message.attach(filename, content, content_type)
        # Read by anymail ESP backends; other backends ignore these attributes.
        message.metadata = {
            "vigil_idempotency_key": notification.idempotency_key,
            "vigil_notification": str(notification.pk),
        }
        # One tag: several ESPs (Postmark, Mandrill...) accept only one.
        message.tags = [f"vigil-{notification.template}"[:60]]
        try:
            message.send()
        except AnymailRecipientsRefused as exc:
            raise PermanentDeliveryError(f"The email provider refused {address}: {exc}") from exc
        except AnymailAPIError as exc:
            status = getattr(exc, "status_code", None)
            if status is None:
                raise TransientDeliveryError(f"Email provider unreachable: {exc}") from exc
            response = getattr(exc, "response", None)
            raise http_error(
                service="Email provider",
                status=status,
                headers=getattr(response, "headers", None),
                body=str(exc),
            ) from exc
        except AnymailError as exc:
            raise PermanentDeliveryError(f"Email provider: {exc}") from exc
        except smtplib.SMTPException as exc:
            raise _smtp_error(exc) from exc
        except BadHeaderError as exc:
            raise PermanentDeliveryError(f"Invalid email header: {exc}") from exc
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise TransientDeliveryError(f"Mail server unreachable: {exc}") from exc
        status = getattr(message, "anymail_status", None)
        if status is not None and status.message_id:
            return str(status.message_id)
        return msgid.strip("<>")
