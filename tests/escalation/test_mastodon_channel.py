"""The Mastodon channel against a local HTTP server standing in for a Mastodon instance: what
arrives there (bearer token, form body, Idempotency-Key) and how each failure is classified."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
import time_machine

from escalation.channels import (
    PermanentDeliveryError,
    TransientDeliveryError,
    backend_for,
)
from escalation.channels.mastodon import MastodonBackend
from escalation.outbox import notification_enqueue
from tests import workers
from tests.workers import Reply

http_sink = workers.http_sink
no_external_network = workers.no_external_network

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

TOKEN = "mastodon-test-token"
POSTED = {
    "id": "110000000000000001",
    "uri": "https://social.example/users/acme/statuses/110000000000000001",
    "url": "https://social.example/@acme/110000000000000001",
    "content": "<p>ok</p>",
    "visibility": "public",
    "created_at": "2026-01-01T00:00:00.000Z",
}


@pytest.fixture
def mastodon(settings, http_sink):
    settings.VIGIL_MASTODON_API_BASE_URL = http_sink.url
    settings.VIGIL_MASTODON_ACCESS_TOKEN = TOKEN
    settings.VIGIL_MASTODON_VISIBILITY = "public"
    http_sink.default = Reply(body=POSTED)
    return http_sink


@pytest.fixture
def make_notification(incident):
    counter = iter(range(1, 1000))

    def make(body: str = "Checkout is down. Updates: https://status.example/", **extra):
        fields = {
            "incident": incident,
            "channel": "mastodon",
            "recipient": "company account",
            "subject": f"Social post: {incident.number}",
            "body": body,
            "template": "social_post",
            "reason": "Social media for widespread outages (§5.2)",
            "idempotency_key": f"social:test:{next(counter)}",
        }
        fields.update(extra)
        return notification_enqueue(**fields)

    return make


def form(request) -> dict[str, list[str]]:
    return parse_qs(request.body.decode(), keep_blank_values=True)


def test_a_post_reaches_the_statuses_endpoint_with_token_text_and_key(mastodon, make_notification):
    text = "Checkout is down & we're on it. Updates: https://status.example/"
    notification = make_notification(text)

    provider_id = MastodonBackend().send(notification)

    [request] = mastodon.requests()
    assert request.method == "POST"
    assert request.path == "/api/v1/statuses"
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("Idempotency-Key") == notification.idempotency_key
    assert request.header("X-Vigil-Idempotency-Key") == notification.idempotency_key
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    body = form(request)
    assert body["status"] == [text]
    assert body["visibility"] == ["public"]
    assert provider_id == POSTED["id"]


def test_visibility_comes_from_settings(settings, mastodon, make_notification):
    settings.VIGIL_MASTODON_VISIBILITY = "Unlisted"
    MastodonBackend().send(make_notification())
    [request] = mastodon.requests()
    assert form(request)["visibility"] == ["unlisted"]


def test_an_unknown_visibility_is_permanent_and_sends_nothing(
    settings, mastodon, make_notification
):
    settings.VIGIL_MASTODON_VISIBILITY = "everyone"
    with pytest.raises(PermanentDeliveryError, match="VIGIL_MASTODON_VISIBILITY"):
        MastodonBackend().send(make_notification())
    assert mastodon.requests() == []


def test_the_recipient_cannot_choose_the_server(mastodon, make_notification):
    notification = make_notification(recipient="http://169.254.169.254/latest/meta-data")
    MastodonBackend().send(notification)
    [request] = mastodon.requests()
    assert request.path == "/api/v1/statuses"


@pytest.mark.parametrize(("base_url", "token"), [("", TOKEN), ("http://127.0.0.1:9", ""), ("", "")])
def test_unconfigured_is_permanent(settings, make_notification, base_url, token):
    settings.VIGIL_MASTODON_API_BASE_URL = base_url
    settings.VIGIL_MASTODON_ACCESS_TOKEN = token
    with pytest.raises(PermanentDeliveryError, match="not configured"):
        MastodonBackend().send(make_notification())


def test_a_text_over_500_characters_is_permanent_and_sends_nothing(mastodon, make_notification):
    with pytest.raises(PermanentDeliveryError, match="at most 500"):
        MastodonBackend().send(make_notification("x" * 501))
    assert mastodon.requests() == []


@pytest.mark.parametrize(
    ("reply", "expected", "retry_after"),
    [
        (
            Reply(status=429, body={"error": "Too many requests"}, headers={"Retry-After": "7"}),
            TransientDeliveryError,
            7,
        ),
        (
            Reply(status=503, body={"error": "down"}, headers={"Retry-After": "12"}),
            TransientDeliveryError,
            12,
        ),
        (Reply(status=500, body={"error": "oops"}), TransientDeliveryError, None),
        (Reply(status=502, body="bad gateway"), TransientDeliveryError, None),
        (
            Reply(status=401, body={"error": "The access token is invalid"}),
            PermanentDeliveryError,
            None,
        ),
        (
            Reply(status=403, body={"error": "This action is outside the authorized scopes"}),
            PermanentDeliveryError,
            None,
        ),
        (Reply(status=404, body={"error": "Record not found"}), PermanentDeliveryError, None),
        (
            Reply(status=422, body={"error": "Validation failed: Text is too long"}),
            PermanentDeliveryError,
            None,
        ),
        (
            Reply(status=302, body=POSTED, headers={"Location": "http://elsewhere.test/"}),
            PermanentDeliveryError,
            None,
        ),
    ],
)
def test_answers_are_classified(mastodon, make_notification, reply, expected, retry_after):
    mastodon.reply(reply)
    with pytest.raises(expected) as raised:
        MastodonBackend().send(make_notification())
    if expected is TransientDeliveryError:
        assert raised.value.retry_after == retry_after
    # One request per attempt: Mastodon.py neither sleeps on a 429 nor retries.
    assert len(mastodon.requests()) == 1


def test_the_error_names_the_server_answer(mastodon, make_notification):
    mastodon.reply(Reply(status=422, body={"error": "Validation failed: Text is too long"}))
    with pytest.raises(PermanentDeliveryError, match=r"HTTP 422.*Text is too long"):
        MastodonBackend().send(make_notification())


@time_machine.travel(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), tick=False)
def test_a_rate_limit_without_retry_after_waits_for_the_reset(mastodon, make_notification):
    reset = (datetime(2026, 3, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=90)).isoformat()
    mastodon.reply(
        Reply(
            status=429,
            body={"error": "Too many requests"},
            headers={"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": "0"},
        )
    )
    with pytest.raises(TransientDeliveryError) as raised:
        MastodonBackend().send(make_notification())
    assert raised.value.retry_after == 90


def test_a_server_that_is_down_is_transient(settings, make_notification):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.VIGIL_MASTODON_API_BASE_URL = f"http://127.0.0.1:{port}"
    settings.VIGIL_MASTODON_ACCESS_TOKEN = TOKEN
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        MastodonBackend().send(make_notification())


def test_an_answer_that_is_not_a_status_is_permanent(mastodon, make_notification):
    mastodon.reply(Reply(body="<html>hello</html>", headers={"Content-Type": "text/html"}))
    with pytest.raises(PermanentDeliveryError):
        MastodonBackend().send(make_notification())


def test_the_channel_is_a_default_backend(settings):
    settings.VIGIL_CHANNEL_BACKENDS = {}
    assert isinstance(backend_for("mastodon"), MastodonBackend)


def test_a_resend_carries_the_same_key(mastodon, make_notification):
    notification = make_notification()
    MastodonBackend().send(notification)
    MastodonBackend().send(notification)
    first, second = mastodon.requests()
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key")
    assert first.header("Idempotency-Key") == notification.idempotency_key
