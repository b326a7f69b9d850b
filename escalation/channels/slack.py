"""Slack through slack-sdk: ``chat.postMessage`` with a bot token (the recipient is a channel or
user id), or an incoming webhook (a fixed channel; the recipient is mentioned).

slack-sdk's own retry handlers are switched off: the outbox is the one place that decides about
retries, with backoff across attempts rather than an immediate repeat inside one. Neither
``chat.postMessage`` nor an incoming webhook takes an idempotency key: a resent notification is a
second message (the key rides along in the message metadata and a request header, for tracing).

A notification's subject and body are plain text. Everything taken from them is escaped as Slack
documents (``&`` ``<`` ``>`` as ``&amp;`` ``&lt;`` ``&gt;``), so no title can mention anyone
(``<!channel>``, ``<@U…>``) or make a link (``<https://…|Acknowledge>``), and the text objects are
``verbatim`` (no automatic linking of names or URLs). Slack has no escape for its emphasis
characters (``*`` ``_`` ``~`` `````): they can only change how the text itself looks. Links
are buttons: "Acknowledge" opens the recipient's signed acknowledge link, "Open" the incident.
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
SECTION_MAX = 3000
TEXT_MAX = 3900
_CUT_ENTITY = re.compile(r"&[a-z]{0,3}$")


def escape(text: str) -> str:
    """Plain text as Slack shows it literally: its three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, never ending inside an entity."""
    if len(text) <= limit:
        return text
    return _CUT_ENTITY.sub("", text[: limit - 1]) + "…"


def _mention(recipient: str) -> str:
    if SLACK_ID.match(recipient):
        return f"<@{recipient}>"
    return escape(recipient)


def _text(notification: Notification) -> str:
    return escape(f"{notification.subject}\n{notification.body}".strip())


def _blocks(notification: Notification) -> list[dict[str, Any]]:
    incident = incident_payload(notification)
    title = escape(notification.subject or notification.reason)
    text = f"*{title}*\n{escape(notification.body)}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _clip(text, SECTION_MAX), "verbatim": True},
        }
    ]
    buttons = []
    ack_url = notification.ack_url
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
        try:
            response = client.chat_postMessage(
                channel=notification.recipient.lstrip("#"),
                text=_clip(_text(notification), TEXT_MAX),
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
        text = f"{mention}: {_text(notification)}"
        blocks = _blocks(notification)
        blocks.insert(
            0,
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": mention, "verbatim": True}],
            },
        )
        try:
            response = client.send(text=_clip(text, TEXT_MAX), blocks=blocks, unfurl_links=False)
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
