"""A development backend: writes the notification to the log and counts it as sent."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models import Notification

logger = logging.getLogger("vigil.notifications")


class LogBackend:
    def send(self, notification: Notification) -> str:
        logger.info(
            "[%s] to %s (%s, key %s): %s\n%s",
            notification.channel,
            notification.recipient,
            notification.reason,
            notification.idempotency_key,
            notification.subject,
            notification.body,
        )
        return f"log-{notification.pk}"
