"""Slack through slack-sdk: ``chat.postMessage`` with a bot token (the recipient is a channel or
user id), or an incoming webhook (a fixed channel; the recipient is mentioned).

slack-sdk's own retry handlers are switched off: the outbox is the one place that decides about
retries, with backoff across attempts rather than an immediate repeat inside one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from .base import IDEMPOTENCY_HEADER, USER_AGENT, http_timeout, incident_payload, setting
from .errors import (
    PermanentDeliveryError,
    TransientDeliveryError,
    http_error,
    parse_retry_after,
)

if TYPE_CHECKING:
    from ..models import Notification

# Web API errors that describe Slack's state, not the request: worth trying again.
TRANSIENT_API_ERRORS = {
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
}
SLACK_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")


def _mention(recipient: str) -> str:
    if SLACK_ID.match(recipient):
        return f"<@{recipient}>"
    return recipient


def _blocks(notification: Notification) -> list[dict[str, Any]]:
    incident = incident_payload(notification)
    text = f"*{notification.subject or notification.reason}*\n{notification.body}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}
    ]
    buttons = []
    ack_url = (notification.context or {}).get("ack_url")
    if ack_url:
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "style": "primary",
                "url": ack_url,
            }
        )
    if incident:
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": f"Open {incident['number']}"},
                "url": incident["url"],
            }
        )
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


class SlackBackend:
    def send(self, notification: Notification) -> str:
        token = setting("VIGIL_SLACK_BOT_TOKEN", "")
        if token:
            return self._post_message(notification, token)
        url = setting("VIGIL_SLACK_WEBHOOK_URL", "")
        if url:
            return self._webhook(notification, url)
        raise PermanentDeliveryError(
            "Slack is not configured: set VIGIL_SLACK_BOT_TOKEN or VIGIL_SLACK_WEBHOOK_URL."
        )

    def _post_message(self, notification: Notification, token: str) -> str:
        client = WebClient(
            token=token,
            base_url=setting("VIGIL_SLACK_API_URL", WebClient.BASE_URL),
            timeout=int(http_timeout()),
            headers={IDEMPOTENCY_HEADER: notification.idempotency_key},
            user_agent_prefix=USER_AGENT,
            retry_handlers=[],
        )
        text = f"{notification.subject}\n{notification.body}".strip()
        try:
            response = client.chat_postMessage(
                channel=notification.recipient.lstrip("#"),
                text=text[:3900],
                blocks=_blocks(notification),
                metadata={
                    "event_type": "vigil_notification",
                    "event_payload": {"idempotency_key": notification.idempotency_key},
                },
                unfurl_links=False,
            )
        except SlackApiError as exc:
            status = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = data.get("error", "")
            detail = f"Slack chat.postMessage: {error or f'HTTP {status}'}"
            if status == 429 or error in TRANSIENT_API_ERRORS or status >= 500:
                retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
                if retry_after is None:
                    retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
                raise TransientDeliveryError(detail, retry_after=retry_after) from exc
            raise PermanentDeliveryError(detail) from exc
        except (URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise TransientDeliveryError(f"Slack unreachable: {exc}") from exc
        return f"{response.get('channel', '')}:{response.get('ts', '')}"

    def _webhook(self, notification: Notification, url: str) -> str:
        client = WebhookClient(
            url=url,
            timeout=int(http_timeout()),
            default_headers={IDEMPOTENCY_HEADER: notification.idempotency_key},
            user_agent_prefix=USER_AGENT,
            retry_handlers=[],
        )
        mention = _mention(notification.recipient)
        text = f"{mention}: {notification.subject}\n{notification.body}".strip()
        blocks = _blocks(notification)
        blocks.insert(0, {"type": "context", "elements": [{"type": "mrkdwn", "text": mention}]})
        try:
            response = client.send(text=text[:3900], blocks=blocks, unfurl_links=False)
        except (URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise TransientDeliveryError(f"Slack webhook unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise http_error(
                service="Slack webhook",
                status=response.status_code,
                headers=response.headers,
                body=response.body,
            )
        return ""
