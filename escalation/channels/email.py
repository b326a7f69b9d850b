"""Email through Django's mail API: any django-anymail ESP in production, SMTP, console in
development, locmem in tests (``DJANGO_EMAIL_BACKEND``).

The idempotency key travels as anymail ``metadata`` (stored by the ESP with the message and
returned in its webhooks), as an ``X-Vigil-Idempotency-Key`` header, and as a Message-ID derived
from it: every attempt to send one notification is the same message, which mail clients and
archives that deduplicate by Message-ID show once.

Paging messages are plain text, so there is nothing to escape in the body; an ``html``
alternative given in the context (customer-facing mail) is sent as given, and whoever renders it
must autoescape. The context's ``headers`` (list and threading headers, checked against
``escalation.outbox.EMAIL_HEADERS`` when the row is written) are added to the message. The
subject is one line: line breaks in it become spaces, so it can never start
a header of its own.
"""

from __future__ import annotations

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


class EmailBackend:
    def send(self, notification: Notification) -> str:
        address = notification.recipient
        try:
            validate_email(address)
        except ValidationError as exc:
            raise PermanentDeliveryError(f"{address!r} is not an email address.") from exc
        msgid = message_id(notification.idempotency_key)
        message = EmailMultiAlternatives(
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
