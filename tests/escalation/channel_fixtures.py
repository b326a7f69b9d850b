"""Fixtures shared by the channel backend tests: a notification maker, a free local port and
the signed webhook pointed at the HTTP sink.

Import the fixtures into a test module (with ``http_sink`` from :mod:`tests.workers`)::

    from tests.escalation import channel_fixtures

    make_notification = channel_fixtures.make_notification
"""

from __future__ import annotations

import socket

import pytest

from escalation.services import notification_enqueue

KEY_HEADER = "X-Vigil-Idempotency-Key"
ACK_URL = "http://vigil.test/ack/#abc"


@pytest.fixture
def make_notification(incident):
    counter = iter(range(1, 1000))

    def make(channel: str, recipient: str, **extra):
        n = next(counter)
        fields = {
            "incident": incident,
            "channel": channel,
            "recipient": recipient,
            "subject": f"[Sev {incident.severity_id}] {incident.number} {incident.title}",
            "body": f"{incident.title}\nAcknowledge: {ACK_URL}",
            "template": "page",
            "reason": "Initial notification (§4.2 step 1)",
            "idempotency_key": f"test:{channel}:{recipient}:{n}",
            "ack_url": ACK_URL,
        }
        fields.update(extra)
        return notification_enqueue(**fields)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webhook(settings, http_sink):
    settings.VIGIL_WEBHOOK_URL = f"{http_sink.url}/vigil"
    settings.VIGIL_WEBHOOK_URLS = {"noc": f"{http_sink.url}/noc"}
    settings.VIGIL_WEBHOOK_SECRET = "s3cret-shared-with-the-receiver"
    return http_sink
