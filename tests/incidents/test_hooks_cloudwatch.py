"""AWS CloudWatch alarms through Amazon SNS at /hooks/cloudwatch/<key>/.

Real SNS messages (payloads/sns-*.json, the shapes of Amazon's documentation) signed here as
SNS signs them (SHA1withRSA for SignatureVersion 1, SHA256withRSA for 2, over the string to
sign Amazon documents), with a key whose certificate a local HTTPS server serves. That server
is the "SNS host": the allowlist (VIGIL_SNS_CERT_HOST_PATTERN) is set to ``localhost`` and its
TLS certificate is trusted through REQUESTS_CA_BUNDLE, so the certificate and the
subscription confirmation are fetched over real, verified HTTPS; it records every request.
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import certifi
import pytest
import time_machine
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.cache import cache

from incidents.models import Alert, Incident, WebhookDelivery
from tests.incidents.detection_fixtures import (
    hook_path,
    make_integration,
    payload,
    process_pending,
)
from tests.tls import self_signed_certificate, tls_files

NOW = datetime(2026, 11, 27, 9, 45, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:vigil-alarms"
OTHER_TOPIC = "arn:aws:sns:us-east-1:210987654321:someone-elses"
PEM_PATH = "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
CONSOLE = (
    "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
    "#alarmsV2:alarm/checkout-cpu-high"
)
# The string to sign, per message type, as Amazon documents it.
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED["UnsubscribeConfirmation"] = SIGNED["SubscriptionConfirmation"]

pytestmark = pytest.mark.django_db


# --- keys, certificates and the local SNS host -----------------------------------------------


@dataclass
class Keys:
    signing: rsa.RSAPrivateKey
    signing_pem: bytes
    tls_cert: str
    tls_key: str


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Keys:
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_pem = self_signed_certificate(signing, "sns.amazonaws.com", tls=False).public_bytes(
        serialization.Encoding.PEM
    )
    tls_cert, tls_key = tls_files(tmp_path_factory.mktemp("sns-tls"))
    return Keys(signing, signing_pem, str(tls_cert), str(tls_key))


@dataclass
class SnsHost:
    """A local HTTPS server standing for Amazon SNS: serves the signing certificate at
    ``PEM_PATH``, answers subscription confirmations, 500 at ``/broken.pem``, 404 otherwise,
    and records every path requested."""

    keys: Keys
    requested: list[str] = field(default_factory=list)

    def start(self) -> SnsHost:
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.requested.append(self.path)
                if self.path == PEM_PATH:
                    status, body = 200, host.keys.signing_pem
                elif self.path.startswith("/?Action=ConfirmSubscription&"):
                    status, body = 200, b"<ConfirmSubscriptionResponse/>"
                elif self.path == "/broken.pem":
                    status, body = 500, b"Internal Failure"
                else:
                    status, body = 404, b"Not Found"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.keys.tls_cert, self.keys.tls_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def cert_url(self) -> str:
        return self.base + PEM_PATH

    def confirm_url(self, base: str | None = None, topic: str = TOPIC) -> str:
        return f"{base or self.base}/?Action=ConfirmSubscription&TopicArn={topic}&Token=2336412f"


@pytest.fixture
def sns_host(keys, monkeypatch, settings):
    host = SnsHost(keys).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", keys.tls_cert)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    settings.VIGIL_SNS_CERT_HOST_PATTERN = r"^localhost$"
    yield host
    host.stop()


@pytest.fixture(autouse=True)
def at_now():
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def integration(service):
    return make_integration("cloudwatch", service=service, auto_resolve=True)


# --- SNS messages ------------------------------------------------------------------------------


def sign(
    envelope: dict[str, Any],
    key: rsa.RSAPrivateKey,
    *,
    cert_url: str,
    version: str = "1",
    **changes: Any,
) -> dict[str, Any]:
    """``envelope`` with ``changes``, signed as SNS signs (SHA-256 for any version but 1)."""
    envelope = {**copy.deepcopy(envelope), **changes}
    envelope["SignatureVersion"] = version
    envelope["SigningCertURL"] = cert_url
    text = "".join(f"{n}\n{envelope[n]}\n" for n in SIGNED[envelope["Type"]] if n in envelope)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    envelope["Signature"] = base64.b64encode(signature).decode()
    return envelope


def alarm(name: str) -> dict[str, Any]:
    return payload(f"sns-cloudwatch-{name}-notification.json")


def with_alarm(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The notification with its alarm (the JSON in Message) changed."""
    message = json.loads(envelope["Message"])
    message.update(changes)
    return {**envelope, "Message": json.dumps(message)}


def confirmation(host: SnsHost, **changes: Any) -> dict[str, Any]:
    envelope = payload("sns-subscription-confirmation.json")
    envelope["SubscribeURL"] = host.confirm_url()
    envelope.update(changes)
    return envelope


def deliver(client, integration, envelope, capture, *, message_type=None, path=None, **kw):
    """POST ``envelope`` as SNS does: text/plain, with its type in x-amz-sns-message-type."""
    headers = {
        "x-amz-sns-message-type": message_type or envelope["Type"],
        "x-amz-sns-message-id": envelope["MessageId"],
        "x-amz-sns-topic-arn": envelope["TopicArn"],
        "User-Agent": "Amazon Simple Notification Service Agent",
    }
    with capture():
        return client.generic(
            "POST",
            path or hook_path(integration),
            json.dumps(envelope).encode(),
            content_type=kw.get("content_type", "text/plain; charset=UTF-8"),
            headers=headers,
        )


def written() -> tuple[int, int, int]:
    return WebhookDelivery.objects.count(), Alert.objects.count(), Incident.objects.count()


# --- the subscription --------------------------------------------------------------------------


def test_confirmation_visits_the_subscribe_url_and_is_recorded(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    envelope = sign(confirmation(sns_host), keys.signing, cert_url=sns_host.cert_url)
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "confirmed"
    assert sns_host.requested == [PEM_PATH, sns_host.confirm_url().removeprefix(sns_host.base)]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.alert_count, delivery.dedup_key) == (0, f"sns:{envelope['MessageId']}")
    assert delivery.headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    assert json.loads(delivery.body)["TopicArn"] == TOPIC
    # Processed like every delivery: nothing to make of it.
    assert process_pending() == ["processed"]
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://127.0.0.1:{port}/?Action=ConfirmSubscription&TopicArn={topic}&Token=1",
        "http://localhost:{port}/?Action=ConfirmSubscription&TopicArn={topic}&Token=1",
        "https://localhost:{port}/?Action=Unsubscribe&TopicArn={topic}&Token=1",
        "https://localhost:{port}/?Action=ConfirmSubscription&TopicArn=" + OTHER_TOPIC,
    ],
    ids=["host-not-allowed", "http", "not-a-confirmation", "another-topic"],
)
def test_confirmation_visits_only_an_sns_confirmation_url(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration, subscribe_url
):
    url = subscribe_url.format(port=sns_host.port, topic=TOPIC)
    envelope = sign(
        confirmation(sns_host, SubscribeURL=url), keys.signing, cert_url=sns_host.cert_url
    )
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert sns_host.requested == [PEM_PATH]  # the certificate, never the URL
    assert written() == (0, 0, 0)


def test_unsubscribe_confirmation_is_noted_and_its_url_not_visited(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    envelope = sign(
        confirmation(sns_host, Type="UnsubscribeConfirmation"),
        keys.signing,
        cert_url=sns_host.cert_url,
    )
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert sns_host.requested == [PEM_PATH]
    assert written() == (0, 0, 0)


def test_once_confirmed_other_topics_are_refused(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    capture = django_capture_on_commit_callbacks
    deliver(
        client,
        integration,
        sign(confirmation(sns_host), keys.signing, cert_url=sns_host.cert_url),
        capture,
    )
    before = written()
    requested = len(sns_host.requested)

    foreign = sign(
        confirmation(
            sns_host,
            MessageId="9b1b3a5e-0000-4000-8000-000000000001",
            TopicArn=OTHER_TOPIC,
            SubscribeURL=sns_host.confirm_url(topic=OTHER_TOPIC),
        ),
        keys.signing,
        cert_url=sns_host.cert_url,
    )
    response = deliver(client, integration, foreign, capture)
    assert response.status_code == 403
    assert response.json()["code"] == "topic_not_allowed"
    notification = sign(
        alarm("alarm"), keys.signing, cert_url=sns_host.cert_url, TopicArn=OTHER_TOPIC
    )
    response = deliver(client, integration, notification, capture)
    assert response.status_code == 403
    assert written() == before
    assert len(sns_host.requested) == requested  # no confirmation visited (cert cached)

    # The confirmed topic's alarms are taken.
    notification = sign(alarm("alarm"), keys.signing, cert_url=sns_host.cert_url)
    assert deliver(client, integration, notification, capture).status_code == 200


# --- alarms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_alarm_opens_an_incident_and_ok_resolves_its_alert(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration, version
):
    capture = django_capture_on_commit_callbacks
    firing = sign(alarm("alarm"), keys.signing, cert_url=sns_host.cert_url, version=version)
    response = deliver(client, integration, firing, capture)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    assert response.json()["alerts"] == 1
    assert process_pending() == ["processed"]

    alert = Alert.objects.get()
    assert alert.status == "firing"
    assert alert.fingerprint == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-cpu-high"
    assert alert.title == "checkout-cpu-high"
    assert alert.labels == {
        "alertname": "checkout-cpu-high",
        "aws_account_id": "123456789012",
        "region": "us-east-1",
        "namespace": "AWS/EC2",
        "metric_name": "CPUUtilization",
        "InstanceId": "i-0123456789abcdef0",
    }
    assert alert.annotations["console_url"] == CONSOLE
    assert alert.annotations["description"] == "CPU above 90% on the checkout instance"
    assert alert.annotations["reason"].startswith("Threshold Crossed: 2 out of the last 2")
    assert alert.annotations["region_name"] == "US East (N. Virginia)"
    assert alert.starts_at == datetime(2026, 11, 27, 9, 41, 2, 125000, tzinfo=UTC)
    assert not alert.starts_at_estimated
    incident = Incident.objects.get()
    assert incident.title == "checkout-cpu-high"
    assert alert.incident == incident

    resolving = sign(alarm("ok"), keys.signing, cert_url=sns_host.cert_url, version=version)
    response = deliver(client, integration, resolving, capture)
    assert response.status_code == 200, response.content
    assert process_pending() == ["processed"]
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.ends_at == datetime(2026, 11, 27, 9, 44, 12, 503000, tzinfo=UTC)
    assert incident.status == "monitoring"
    # One certificate fetch for both messages (cached by URL).
    assert sns_host.requested == [PEM_PATH]


def test_insufficient_data_is_ignored(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    envelope = sign(
        with_alarm(alarm("alarm"), NewStateValue="INSUFFICIENT_DATA"),
        keys.signing,
        cert_url=sns_host.cert_url,
    )
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert written() == (0, 0, 0)


def test_the_same_message_twice_is_stored_once(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    envelope = sign(alarm("alarm"), keys.signing, cert_url=sns_host.cert_url)
    first = deliver(client, integration, envelope, django_capture_on_commit_callbacks)
    again = deliver(client, integration, envelope, django_capture_on_commit_callbacks)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1


def test_a_message_that_is_not_an_alarm_is_refused(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    envelope = sign(
        alarm("alarm"), keys.signing, cert_url=sns_host.cert_url, Message="Hello from the console"
    )
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert "Not a CloudWatch alarm" in response.json()["detail"]
    assert written() == (0, 0, 0)


# --- refusals ---------------------------------------------------------------------------------


def _bad_signature(host, keys):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return sign(alarm("alarm"), other, cert_url=host.cert_url)


def _tampered(host, keys):
    envelope = sign(alarm("alarm"), keys.signing, cert_url=host.cert_url)
    return with_alarm(envelope, NewStateValue="OK")


def _stale(host, keys):
    # Signed 65 minutes before Vigil's clock: past the hour SNS retries for.
    return sign(
        alarm("alarm"), keys.signing, cert_url=host.cert_url, Timestamp="2026-11-27T08:40:00.000Z"
    )


def _cert_host_not_allowed(host, keys):
    return sign(alarm("alarm"), keys.signing, cert_url=f"https://127.0.0.1:{host.port}{PEM_PATH}")


def _cert_over_http(host, keys):
    return sign(alarm("alarm"), keys.signing, cert_url=f"http://localhost:{host.port}{PEM_PATH}")


def _cert_with_user_part(host, keys):
    url = f"https://localhost@127.0.0.1:{host.port}{PEM_PATH}"
    return sign(alarm("alarm"), keys.signing, cert_url=url)


def _unknown_version(host, keys):
    return sign(alarm("alarm"), keys.signing, cert_url=host.cert_url, version="3")


@pytest.mark.parametrize(
    "make, fetched",
    [
        (_bad_signature, True),
        (_tampered, True),
        (_stale, False),
        (_cert_host_not_allowed, False),
        (_cert_over_http, False),
        (_cert_with_user_part, False),
        (_unknown_version, False),
    ],
    ids=[
        "bad-signature",
        "tampered",
        "stale-timestamp",
        "cert-host-not-allowed",
        "cert-over-http",
        "cert-url-with-user-part",
        "unknown-signature-version",
    ],
)
def test_unverifiable_messages_are_refused_and_nothing_is_written(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration, make, fetched
):
    response = deliver(
        client, integration, make(sns_host, keys), django_capture_on_commit_callbacks
    )
    assert response.status_code == 401, response.content
    assert response.json()["code"] == "authentication_failed"
    assert written() == (0, 0, 0)
    # A certificate URL off the allowlist (or any message refused before the signature is
    # checked) is never fetched.
    assert sns_host.requested == ([PEM_PATH] if fetched else [])


def test_a_wrong_key_in_the_url_is_refused(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    envelope = sign(alarm("alarm"), keys.signing, cert_url=sns_host.cert_url)
    response = deliver(
        client,
        integration,
        envelope,
        django_capture_on_commit_callbacks,
        path=hook_path(integration).replace(integration.key, "x" * 32),
    )
    assert response.status_code == 404
    assert written() == (0, 0, 0)
    assert sns_host.requested == []


def test_an_unreachable_certificate_is_a_503_for_sns_to_retry(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration
):
    envelope = sign(alarm("alarm"), keys.signing, cert_url=sns_host.base + "/broken.pem")
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks)
    assert response.status_code == 503
    assert response["Retry-After"]
    assert written() == (0, 0, 0)


def test_a_certificate_host_whose_tls_certificate_is_not_trusted_is_not_believed(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration, monkeypatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # the public CAs only
    envelope = sign(alarm("alarm"), keys.signing, cert_url=sns_host.cert_url)
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks)
    assert response.status_code == 503
    assert "SSLError" in response.json()["detail"]
    assert written() == (0, 0, 0)
    assert sns_host.requested == []


@pytest.mark.parametrize(
    "change, status",
    [
        ({"message_type": "SubscriptionConfirmation"}, 400),
        ({"content_type": "application/x-www-form-urlencoded"}, 415),
    ],
    ids=["header-not-the-type", "content-type"],
)
def test_requests_not_shaped_as_sns_are_refused(
    client, django_capture_on_commit_callbacks, keys, sns_host, integration, change, status
):
    envelope = sign(alarm("alarm"), keys.signing, cert_url=sns_host.cert_url)
    response = deliver(client, integration, envelope, django_capture_on_commit_callbacks, **change)
    assert response.status_code == status
    assert written() == (0, 0, 0)
    assert sns_host.requested == []


def test_a_request_without_the_sns_header_is_refused(client, integration):
    response = client.post(hook_path(integration), "{}", content_type="text/plain")
    assert response.status_code == 400
    assert "x-amz-sns-message-type" in response.json()["detail"]


# --- the administrator's view -----------------------------------------------------------------


def test_admin_page_shows_the_sns_setup_with_the_url(client, superuser, integration, settings):
    settings.VIGIL_BASE_URL = "https://vigil.example.com"
    client.force_login(superuser)
    page = client.get(f"/admin/incidents/integration/{integration.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    url = f"https://vigil.example.com/hooks/cloudwatch/{integration.key}/"
    assert f"--notification-endpoint &#x27;{url}&#x27;" in text
    assert "aws sns subscribe --topic-arn &lt;topic-arn&gt; --protocol https" in text
    assert "--alarm-actions &lt;topic-arn&gt; --ok-actions &lt;topic-arn&gt;" in text
