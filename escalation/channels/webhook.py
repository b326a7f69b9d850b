"""Generic outbound webhook: a JSON POST signed with HMAC-SHA256 of the raw body.

Receivers verify ``X-Vigil-Signature: sha256=<hex>`` with the shared secret over the exact bytes
received, and recognise a repeated delivery by its idempotency key: the ``Idempotency-Key``
header (draft-ietf-httpapi-idempotency-key-header), the same value as ``X-Vigil-Idempotency-Key``
and the body's ``idempotency_key``. Every attempt to deliver one notification carries the same
key; ``attempt`` and ``sent_at`` in the body tell the attempts apart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING

from django.utils import timezone

from .base import IDEMPOTENCY_HEADER, incident_payload, named_target, post, setting
from .errors import PermanentDeliveryError

if TYPE_CHECKING:
    from ..models import Notification

SIGNATURE_HEADER = "X-Vigil-Signature"
STANDARD_IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookBackend:
    def send(self, notification: Notification) -> str:
        secret = setting("VIGIL_WEBHOOK_SECRET", "")
        if not secret:
            raise PermanentDeliveryError(
                "Outbound webhooks need VIGIL_WEBHOOK_SECRET; Vigil does not send unsigned hooks."
            )
        url = named_target(
            service="Outbound webhook",
            default=setting("VIGIL_WEBHOOK_URL", ""),
            named=setting("VIGIL_WEBHOOK_URLS", {}),
            recipient=notification.recipient,
        )
        payload = {
            "event": "notification",
            "id": notification.pk,
            "idempotency_key": notification.idempotency_key,
            "attempt": notification.attempts,
            "sent_at": timezone.now().isoformat(),
            "recipient": notification.recipient,
            "reason": notification.reason,
            "template": notification.template,
            "subject": notification.subject,
            "body": notification.body,
            "context": notification.context,
            "incident": incident_payload(notification),
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        response = post(
            service="Outbound webhook",
            url=url,
            data=body,
            headers={
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: notification.idempotency_key,
                STANDARD_IDEMPOTENCY_HEADER: notification.idempotency_key,
                SIGNATURE_HEADER: sign(secret, body),
            },
        )
        return response.headers.get("X-Request-Id", "")
