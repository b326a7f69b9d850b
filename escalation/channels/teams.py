"""Microsoft Teams through an incoming webhook (Workflows or a legacy connector): an Adaptive
Card posted to a URL from settings.

A notification's subject and body are plain text, and reach the card as ``TextRun`` elements of
``RichTextBlock`` s, which Adaptive Cards render without Markdown: a title holding
``[Acknowledge](https://…)`` or ``**…**`` is shown as typed, never as a link or emphasis.
``TextBlock`` texts and facts are Markdown in Teams, so the few values put there have Markdown's
control characters escaped. Teams webhooks take no idempotency key: a resent notification is a
second card.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .base import IDEMPOTENCY_HEADER, incident_payload, named_target, post, setting
from .errors import TransientDeliveryError

if TYPE_CHECKING:
    from ..models import Notification

# What makes emphasis, code, links and autolinks anywhere in a line; list markers only start one.
_MARKDOWN = re.compile(r"([\\`*_~\[\]<>])")
_LIST_MARKER = re.compile(r"^(\s*)(?:([-+])|(\d+)\.)(?=\s)", re.MULTILINE)


def _unlist(match: re.Match[str]) -> str:
    indent, bullet, number = match.groups()
    return f"{indent}\\{bullet}" if bullet else f"{indent}{number}\\."


def markdown_escape(text: str) -> str:
    """``text`` as Markdown that shows it literally (CommonMark backslash escapes): no
    emphasis, code, link or autolink, and no line turned into a list item."""
    return _LIST_MARKER.sub(_unlist, _MARKDOWN.sub(r"\\\1", text))


def _runs(text: str, **style: Any) -> list[dict[str, Any]]:
    """One ``RichTextBlock`` per line of ``text`` (a ``TextRun`` does not break lines)."""
    return [
        {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": line, **style}]}
        for line in text.splitlines()
        if line.strip()
    ]


def adaptive_card(notification: Notification) -> dict[str, Any]:
    incident = incident_payload(notification)
    facts = [{"title": "For", "value": markdown_escape(notification.recipient)}]
    if incident:
        facts += [
            {
                "title": "Incident",
                "value": markdown_escape(f"{incident['number']} (Sev {incident['severity']})"),
            },
            {"title": "Status", "value": markdown_escape(str(incident["status"]))},
        ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            *_runs(notification.subject or notification.reason, weight="Bolder", size="Medium"),
            *_runs(notification.body),
            {"type": "FactSet", "facts": facts},
        ],
    }
    actions = []
    if incident:
        actions.append({"type": "Action.OpenUrl", "title": "Open incident", "url": incident["url"]})
    if notification.ack_url:
        actions.append(
            {"type": "Action.OpenUrl", "title": "Acknowledge", "url": notification.ack_url}
        )
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
