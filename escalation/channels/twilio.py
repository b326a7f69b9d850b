"""SMS and voice calls through Twilio's own client library.

Twilio has no idempotency key for creating messages or calls, so the notification's key rides
along twice: as ``X-Vigil-Idempotency-Key`` on the API request, and as a query parameter of the
status callback (when one is configured), where Twilio reports back about the message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from .base import IDEMPOTENCY_HEADER, http_timeout, setting
from .errors import (
    PermanentDeliveryError,
    TransientDeliveryError,
    is_transient_status,
    parse_retry_after,
)

if TYPE_CHECKING:
    from ..models import Notification

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
URL = re.compile(r"https?://\S+")
SMS_MAX = 1600
SPEECH_MAX = 1500


class _KeyedHttpClient(TwilioHttpClient):
    """Twilio's HTTP client, adding the idempotency header to every request it makes."""

    def __init__(self, key: str) -> None:
        super().__init__(timeout=http_timeout(), pool_connections=False)
        self.key = key

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):
        kwargs["headers"] = {**(kwargs.get("headers") or {}), IDEMPOTENCY_HEADER: self.key}
        return super().request(method, url, *args, **kwargs)


def _phone(notification: Notification) -> str:
    number = re.sub(r"[\s().-]", "", notification.recipient)
    if not E164.match(number):
        raise PermanentDeliveryError(
            f"{notification.recipient!r} is not a phone number in E.164 form (+14155550100)."
        )
    return number


def _status_callback(key: str) -> str | None:
    base = setting("VIGIL_TWILIO_STATUS_CALLBACK_URL", "")
    if not base:
        return None
    parts = urlsplit(base)
    query = "&".join(filter(None, [parts.query, urlencode({"vigil_idempotency_key": key})]))
    return urlunsplit(parts._replace(query=query))


class _TwilioBackend:
    def _client(self, notification: Notification) -> tuple[Client, _KeyedHttpClient]:
        account = setting("VIGIL_TWILIO_ACCOUNT_SID", "")
        token = setting("VIGIL_TWILIO_AUTH_TOKEN", "")
        if not (account and token):
            raise PermanentDeliveryError(
                "Twilio is not configured: set VIGIL_TWILIO_ACCOUNT_SID and "
                "VIGIL_TWILIO_AUTH_TOKEN."
            )
        http_client = _KeyedHttpClient(notification.idempotency_key)
        # An empty environment: credentials come from Vigil's settings only, never TWILIO_* vars.
        client = Client(account, token, http_client=http_client, environment={})
        api_url = setting("VIGIL_TWILIO_API_URL", "")
        if api_url:
            client.api.base_url = api_url
        return client, http_client

    def _sender(self) -> dict[str, str]:
        service = setting("VIGIL_TWILIO_MESSAGING_SERVICE_SID", "")
        if service:
            return {"messaging_service_sid": service}
        number = setting("VIGIL_TWILIO_FROM_NUMBER", "")
        if not number:
            raise PermanentDeliveryError(
                "Twilio needs VIGIL_TWILIO_FROM_NUMBER (or VIGIL_TWILIO_MESSAGING_SERVICE_SID)."
            )
        return {"from_": number}

    def _call(self, http_client: _KeyedHttpClient, create: Any, **kwargs: Any) -> str:
        try:
            resource = create(**kwargs)
        except TwilioRestException as exc:
            detail = f"Twilio error {exc.code or ''} (HTTP {exc.status}): {exc.msg}".replace(
                "  ", " "
            )
            if is_transient_status(exc.status):
                last = getattr(http_client, "_test_only_last_response", None)
                headers = getattr(last, "headers", None) or {}
                raise TransientDeliveryError(
                    detail, retry_after=parse_retry_after(headers.get("Retry-After"))
                ) from exc
            raise PermanentDeliveryError(detail) from exc
        except requests.Timeout as exc:
            raise TransientDeliveryError(f"Twilio timed out: {exc}") from exc
        except requests.ConnectionError as exc:
            raise TransientDeliveryError(f"Twilio unreachable: {exc}") from exc
        except TwilioException as exc:
            raise PermanentDeliveryError(f"Twilio: {exc}") from exc
        return resource.sid


class TwilioSmsBackend(_TwilioBackend):
    def send(self, notification: Notification) -> str:
        to = _phone(notification)
        client, http_client = self._client(notification)
        text = f"{notification.subject}\n{notification.body}".strip()
        kwargs: dict[str, Any] = {"to": to, "body": text[:SMS_MAX], **self._sender()}
        callback = _status_callback(notification.idempotency_key)
        if callback:
            kwargs["status_callback"] = callback
        return self._call(http_client, client.messages.create, **kwargs)


def speech(notification: Notification) -> str:
    """What the call says: the caller's own wording if given, else the message without links
    (a URL read aloud helps nobody)."""
    spoken = (notification.context or {}).get("speech")
    if not spoken:
        spoken = URL.sub("", f"{notification.subject}. {notification.body}")
    return " ".join(spoken.split())[:SPEECH_MAX]


class TwilioVoiceBackend(_TwilioBackend):
    def send(self, notification: Notification) -> str:
        to = _phone(notification)
        number = setting("VIGIL_TWILIO_FROM_NUMBER", "")
        if not number:
            raise PermanentDeliveryError("Twilio voice calls need VIGIL_TWILIO_FROM_NUMBER.")
        client, http_client = self._client(notification)
        twiml = VoiceResponse()
        # Said twice: the first words of a call are often missed while picking up.
        twiml.say(speech(notification), loop=2)
        kwargs: dict[str, Any] = {"to": to, "from_": number, "twiml": str(twiml)}
        callback = _status_callback(notification.idempotency_key)
        if callback:
            kwargs["status_callback"] = callback
        return self._call(http_client, client.calls.create, **kwargs)
