"""Microsoft Teams through an incoming webhook (Workflows or a legacy connector): an Adaptive
Card posted to a URL from settings."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .base import IDEMPOTENCY_HEADER, incident_payload, named_target, post, setting
from .errors import TransientDeliveryError

if TYPE_CHECKING:
    from ..models import Notification


def adaptive_card(notification: Notification) -> dict[str, Any]:
    incident = incident_payload(notification)
    facts = [{"title": "For", "value": notification.recipient}]
    if incident:
        facts += [
            {"title": "Incident", "value": f"{incident['number']} (Sev {incident['severity']})"},
            {"title": "Status", "value": incident["status"]},
        ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": notification.subject or notification.reason,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": notification.body, "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    actions = []
    if incident:
        actions.append({"type": "Action.OpenUrl", "title": "Open incident", "url": incident["url"]})
    ack_url = (notification.context or {}).get("ack_url")
    if ack_url:
        actions.append({"type": "Action.OpenUrl", "title": "Acknowledge", "url": ack_url})
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


class TeamsBackend:
    def send(self, notification: Notification) -> str:
        url = named_target(
            service="Microsoft Teams",
            default=setting("VIGIL_TEAMS_WEBHOOK_URL", ""),
            named=setting("VIGIL_TEAMS_WEBHOOK_URLS", {}),
            recipient=notification.recipient,
        )
        response = post(
            service="Microsoft Teams",
            url=url,
            data=json.dumps(adaptive_card(notification)).encode(),
            headers={
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: notification.idempotency_key,
            },
        )
        # Legacy connectors answer 200 with the throttling error in the body.
        if "HTTP error 429" in response.text:
            raise TransientDeliveryError(f"Microsoft Teams throttled: {response.text[:200]}")
        return response.headers.get("x-ms-workflow-run-id", "")
