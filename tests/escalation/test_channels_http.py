"""The HTTP client of the channels (``escalation.channels.base.post``): the proxy and CA bundle
the environment names, the charset of an answer, and HTTPS, against local servers the tests
start."""

from __future__ import annotations

import base64

import pytest

from escalation.channels import PermanentDeliveryError, TransientDeliveryError
from escalation.channels import base as channels_base
from escalation.channels.webhook import WebhookBackend
from tests import workers
from tests.escalation import channel_fixtures
from tests.tls import tls_files
from tests.workers import Reply

http_sink = workers.http_sink
no_external_network = workers.no_external_network
make_notification = channel_fixtures.make_notification
webhook = channel_fixtures.webhook
KEY_HEADER = channel_fixtures.KEY_HEADER
free_port = channel_fixtures.free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def environment(monkeypatch):
    """No proxy or CA variable from the machine running the tests, and the transport's reading
    of the environment (kept per process and host) started afresh."""
    for name in PROXY_VARIABLES + CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setattr(channels_base, "_transports", {})
    return monkeypatch


@pytest.fixture
def proxy(environment):
    """A second local server standing in for an HTTP proxy named in the environment, as a
    worker behind an egress proxy is configured."""
    server = workers.HttpSink().start()
    host, port = server.server.server_address[:2]
    environment.setenv("HTTP_PROXY", f"http://vigil:pr0xy@{host}:{port}")
    yield server
    server.stop()


def test_webhook_goes_through_the_proxy_named_in_the_environment(webhook, proxy, make_notification):
    WebhookBackend().send(make_notification("webhook", "noc"))

    assert webhook.requests() == []
    [request] = proxy.requests()
    assert request.path == f"{webhook.url}/noc"
    expected = base64.b64encode(b"vigil:pr0xy").decode()
    assert request.header("Proxy-Authorization") == f"Basic {expected}"
    assert request.header(KEY_HEADER)


def test_a_host_in_no_proxy_is_reached_directly(environment, webhook, proxy, make_notification):
    environment.setenv("NO_PROXY", "127.0.0.1")
    WebhookBackend().send(make_notification("webhook", "noc"))

    assert proxy.requests() == []
    [request] = webhook.requests()
    assert request.path == "/noc"


def test_a_proxy_that_is_down_is_transient(environment, webhook, make_notification):
    environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        WebhookBackend().send(make_notification("webhook", "noc"))
    assert webhook.requests() == []


def test_a_receivers_error_text_is_decoded_in_its_charset(webhook, make_notification):
    webhook.reply(
        Reply(
            status=400,
            body="Ung\u00fcltige Nutzlast".encode("latin-1"),
            headers={"Content-Type": "text/plain; charset=ISO-8859-1"},
        )
    )
    with pytest.raises(PermanentDeliveryError, match="HTTP 400: Ung\u00fcltige Nutzlast"):
        WebhookBackend().send(make_notification("webhook", "noc"))


@pytest.fixture
def https_webhook(settings, tmp_path):
    """The HTTP sink behind TLS, with a certificate for 127.0.0.1 that no public CA signed, as
    the signed webhook's URL; yields the sink and the path of that certificate (a private CA
    bundle of one)."""
    import ssl

    cert_path, key_path = tls_files(tmp_path)
    sink = workers.HttpSink()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    sink.server.socket = context.wrap_socket(sink.server.socket, server_side=True)
    sink.start()
    host, port = sink.server.server_address[:2]
    settings.VIGIL_WEBHOOK_URL = f"https://{host}:{port}/vigil"
    settings.VIGIL_WEBHOOK_SECRET = "x"
    yield sink, cert_path
    sink.stop()


def test_https_to_a_certificate_no_trusted_ca_signed_is_refused(
    environment, https_webhook, make_notification
):
    sink, _ = https_webhook
    with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        WebhookBackend().send(make_notification("webhook", "noc"))
    assert sink.requests() == []


def test_https_trusts_the_ca_bundle_named_in_the_environment(
    environment, https_webhook, make_notification
):
    sink, cert_path = https_webhook
    environment.setenv("REQUESTS_CA_BUNDLE", str(cert_path))
    WebhookBackend().send(make_notification("webhook", "noc"))
    [request] = sink.requests()
    assert request.path == "/vigil"
