"""Notification channels: one small backend class per channel, chosen in settings.

A backend's ``send(notification)`` delivers one outbox row and returns the provider's message id
(or "" when the provider gives none). It raises :class:`TransientDeliveryError` for failures
worth retrying (timeouts, connection errors, 408, 429, 5xx; with the provider's Retry-After when
it sent one) and :class:`PermanentDeliveryError` for those that will fail the same way again
(other 4xx, a bad address, missing configuration). Backends never choose where to send from the
row: URLs and credentials come from settings only, the row only names a recipient.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from incidents.models import Channel, MessageChannel

from .errors import PermanentDeliveryError, TransientDeliveryError

if TYPE_CHECKING:
    from ..models import Notification

__all__ = [
    "DEFAULT_BACKENDS",
    "ChannelBackend",
    "PermanentDeliveryError",
    "TransientDeliveryError",
    "backend_for",
]

DEFAULT_BACKENDS = {
    Channel.EMAIL: "escalation.channels.email.EmailBackend",
    Channel.SLACK: "escalation.channels.slack.SlackBackend",
    Channel.SMS: "escalation.channels.twilio.TwilioSmsBackend",
    Channel.PHONE: "escalation.channels.twilio.TwilioVoiceBackend",
    Channel.TEAMS: "escalation.channels.teams.TeamsBackend",
    Channel.WEBHOOK: "escalation.channels.webhook.WebhookBackend",
    MessageChannel.MASTODON: "escalation.channels.mastodon.MastodonBackend",
    MessageChannel.SUBSCRIBER: "escalation.channels.subscriber.SubscriberBackend",
}


class ChannelBackend(Protocol):
    def send(self, notification: Notification) -> str: ...


@cache
def _load(path: str) -> type:
    return import_string(path)


def backend_for(channel: str) -> ChannelBackend:
    """A fresh backend instance for ``channel`` from ``VIGIL_CHANNEL_BACKENDS``."""
    configured = getattr(settings, "VIGIL_CHANNEL_BACKENDS", None) or {}
    path = configured.get(channel) or DEFAULT_BACKENDS.get(channel)
    if not path:
        raise PermanentDeliveryError(f"No backend is configured for the {channel!r} channel.")
    try:
        backend_class = _load(path)
    except ImportError as exc:
        # A wrong setting fails the notification at once, visibly, instead of retrying for
        # the length of the backoff schedule.
        raise PermanentDeliveryError(f"Channel backend {path!r} cannot be imported: {exc}") from exc
    return backend_class()
