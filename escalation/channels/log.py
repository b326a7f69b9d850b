"""Development backends: a message is one line on the console, not its whole body.

``LogBackend`` (the Slack, SMS, phone, Teams and webhook channels in development) logs a
notification as its channel, recipient, incident ID and title, and acknowledge link, and counts
it as sent. ``ConsoleEmailBackend`` (Django's email backend in development) prints one line per
email: its recipients, subject, the acknowledge link in its text if any, and how many files it
carries. Django's own ``django.core.mail.backends.console.EmailBackend`` prints whole messages
(``DJANGO_EMAIL_BACKEND``).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import TYPE_CHECKING

from django.core.mail.backends.base import BaseEmailBackend

if TYPE_CHECKING:
    from django.core.mail import EmailMessage

    from ..models import Notification

logger = logging.getLogger("vigil.notifications")

TITLE_LENGTH = 60
# A one-click acknowledge link, as escalation.services.ack_links.ack_link_make writes it.
ACK_LINK = re.compile(r"https?://\S+/ack/#[\w.:-]+")


def _short(text: str, length: int = TITLE_LENGTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def notification_line(notification: Notification) -> str:
    """``[sms] to +44 20 7946 0101: INC-2026-1203-004 Card payments fail at checkout · ack
    http://127.0.0.1:8000/ack/#...`` (without an incident: its subject, else its reason)."""
    incident = notification.incident
    if incident is not None:
        what = f"{incident.number} {_short(incident.title)}"
    else:
        what = _short(notification.subject or notification.reason)
    line = f"[{notification.channel}] to {notification.recipient}: {what}"
    if notification.ack_url:
        line += f" · ack {notification.ack_url}"
    return line


class LogBackend:
    def send(self, notification: Notification) -> str:
        logger.info("%s", notification_line(notification))
        return f"log-{notification.pk}"


def email_line(message: EmailMessage) -> str:
    """``[email] to maria@example.com: [Sev 1] INC-2026-1203-004 Card payments ... · ack
    http://...`` and the number of attached files, if any."""
    line = f"[email] to {', '.join(message.recipients())}: {_short(message.subject, 100)}"
    ack = ACK_LINK.search(message.body or "")
    if ack:
        line += f" · ack {ack.group(0)}"
    if message.attachments:
        line += f" · {len(message.attachments)} file(s)"
    return line


class ConsoleEmailBackend(BaseEmailBackend):
    """One line per email on standard output (Django's console backend prints them whole)."""

    def __init__(self, *args, stream=None, **kwargs) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def send_messages(self, email_messages) -> int:
        if not email_messages:
            return 0
        with self._lock:
            for message in email_messages:
                self.stream.write(email_line(message) + "\n")
            self.stream.flush()
        return len(email_messages)
