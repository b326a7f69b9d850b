"""The subscriber webhook channel against a local HTTP server: the composed JSON body POSTed as
is, signed with the URL's own key (which verifies), failures classified like the outbound
webhook's, and addresses that are not public refused before anything is sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket

import pytest

from escalation.channels import PermanentDeliveryError, TransientDeliveryError, backend_for
from escalation.models import NotificationStatus
from escalation.outbox import subscriber_webhook_secret, subscriber_webhook_url_problem
from escalation.services import notification_enqueue, notification_send
from tests import workers
from tests.workers import Reply

http_sink = workers.http_sink
no_external_network = workers.no_external_network

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

BODY = json.dumps({"event": "status_update", "incident": {"id": "INC-1"}, "body": "Fixed."})


@pytest.fixture
def allow_private(settings):
    settings.VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE = True
    settings.VIGIL_SUBSCRIBER_WEBHOOK_KEY = "subscriber-key-for-tests"


def enqueue(url: str, key: str = "sub-1", body: str = BODY):
    return notification_enqueue(
        incident=None,
        channel="subscriber",
        recipient=url,
        subject="Checkout is down",
        body=body,
        template="subscriber-update",
        reason="Status update to subscribers",
        idempotency_key=key,
    )


def test_body_is_posted_as_json_signed_with_the_urls_own_key(allow_private, http_sink):
    url = f"{http_sink.url}/hooks/status"
    notification = enqueue(url)

    assert notification_send(notification_id=notification.pk).result == "sent"

    (received,) = http_sink.requests()
    assert received.method == "POST" and received.path == "/hooks/status"
    assert received.header("Content-Type") == "application/json"
    assert received.body == BODY.encode()  # the composed body, byte for byte
    assert received.header("Idempotency-Key") == "sub-1"
    # The receiver verifies with the secret staff showed it, over the exact bytes received.
    secret = subscriber_webhook_secret(url)
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.header("X-Vigil-Signature"), expected)
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT


def test_each_url_has_its_own_key_derived_from_the_setting(settings):
    settings.VIGIL_SUBSCRIBER_WEBHOOK_KEY = "one"
    a, b = (
        subscriber_webhook_secret("https://a.example/h"),
        subscriber_webhook_secret("https://b.example/h"),
    )
    assert a != b and len(a) == 64
    settings.VIGIL_SUBSCRIBER_WEBHOOK_KEY = "two"
    assert subscriber_webhook_secret("https://a.example/h") != a
    settings.VIGIL_SUBSCRIBER_WEBHOOK_KEY = ""
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    assert subscriber_webhook_secret("https://a.example/h") not in (a,)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TransientDeliveryError),
        (503, TransientDeliveryError),
        (429, TransientDeliveryError),
        (400, PermanentDeliveryError),
        (404, PermanentDeliveryError),
        (410, PermanentDeliveryError),
    ],
)
def test_http_errors_are_classified(allow_private, http_sink, status, error):
    http_sink.reply(Reply(status=status, body="nope", headers={"Retry-After": "7"}))
    notification = enqueue(f"{http_sink.url}/h", key=f"sub-{status}")
    with pytest.raises(error) as raised:
        backend_for("subscriber").send(notification)
    if error is TransientDeliveryError and status == 429:
        assert raised.value.retry_after == 7


def test_a_redirect_is_not_followed(allow_private, http_sink):
    http_sink.reply(Reply(status=302, headers={"Location": "http://169.254.169.254/"}))
    notification = enqueue(f"{http_sink.url}/h")
    with pytest.raises(PermanentDeliveryError, match="redirect"):
        backend_for("subscriber").send(notification)
    assert len(http_sink.requests()) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_is_refused_when_private_addresses_are_not_allowed(settings, http_sink, host):
    settings.VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE = False
    port = http_sink.server.server_address[1]
    notification = enqueue(f"https://{host}:{port}/h", key=f"sub-{host}")

    outcome = notification_send(notification_id=notification.pk)

    assert outcome.result == "failed"  # permanent: not retried
    assert http_sink.requests() == []
    notification.refresh_from_db()
    assert "not a public address" in notification.last_error


def test_a_host_resolving_to_a_private_address_is_refused(settings, monkeypatch):
    settings.VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE = False

    def resolve(host, port, *args, **kwargs):
        address = {"inside.example": "10.1.2.3", "meta.example": "169.254.169.254"}.get(host)
        if address is None:
            raise socket.gaierror("unknown host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert "10.1.2.3" in subscriber_webhook_url_problem("https://inside.example/h")
    assert "169.254.169.254" in subscriber_webhook_url_problem("https://meta.example/h")
    assert "does not resolve" in subscriber_webhook_url_problem("https://nowhere.example/h")
    notification = enqueue("https://inside.example/h")
    with pytest.raises(PermanentDeliveryError, match="not a public address"):
        backend_for("subscriber").send(notification)
    # An unresolvable host may be a passing DNS failure: retried.
    with pytest.raises(TransientDeliveryError):
        backend_for("subscriber").send(enqueue("https://nowhere.example/h", key="sub-dns"))


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/h",  # plain http
        "ftp://hooks.example/h",
        "https://user:pw@hooks.example/h",
        "https:///nohost",
        "https://hooks.example/" + "a" * 300,
        "https://hooks.example/a b",
    ],
)
def test_malformed_or_insecure_urls_are_refused(settings, url):
    settings.VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE = False
    assert subscriber_webhook_url_problem(url)


def test_a_body_that_is_not_json_fails_permanently(allow_private, http_sink):
    notification = enqueue(f"{http_sink.url}/h", body="not json")
    with pytest.raises(PermanentDeliveryError, match="not JSON"):
        backend_for("subscriber").send(notification)
    assert http_sink.requests() == []
