"""The PagerDuty Events API v2-compatible endpoint, driven by PagerDuty's own Python client
(``pagerduty``, unchanged) against a live Vigil: trigger, acknowledge and resolve, with and
without a dedup key, at both base URLs a client can be given.

The client only talks HTTPS (it refuses an ``http://`` base URL), as a production Vigil is
served. The test puts a TLS-terminating relay with a throwaway certificate in front of the
live server and hands the client that certificate as its trust root (``verify=``, a client
setting, not a change to the client).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pagerduty
import pytest
import time_machine
from django.test import override_settings

from incidents.models import Alert, Incident, Kind, WebhookDelivery
from tests.incidents.detection_fixtures import make_integration, pagerduty_event, process_pending
from tests.redis_server import redis_caches, redis_server

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


class TlsRelay(socketserver.ThreadingTCPServer):
    """Accepts TLS on a local port and relays the plain bytes to ``upstream``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self.context, self.upstream = context, upstream
        self.upstream_sockets: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _RelayHandler)

    def close_upstream_connections(self) -> None:
        """End the connections to the live server that the client keeps alive, so its
        request threads finish and close their database connections (the test database
        cannot be dropped at the end of the run while they are open)."""
        for upstream in list(self.upstream_sockets):
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)


class _RelayHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            tls = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with contextlib.closing(tls), socket.create_connection(self.server.upstream) as plain:
            self.server.upstream_sockets.add(plain)
            back = threading.Thread(target=_pump, args=(plain, tls), daemon=True)
            back.start()
            _pump(tls, plain)
            back.join(10)
            self.server.upstream_sockets.discard(plain)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@pytest.fixture
def https_vigil(live_server, tmp_path: Path):
    """(https base URL of the live server, an SSL context trusting its certificate)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    target = urlsplit(live_server.url)
    relay = TlsRelay(server_context, (target.hostname, target.port))
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    yield (
        f"https://127.0.0.1:{relay.server_address[1]}",
        ssl.create_default_context(cafile=str(cert)),
    )
    relay.shutdown()
    relay.close_upstream_connections()
    relay.server_close()


@pytest.fixture
def integration(service):
    return make_integration("pagerduty", service=service, default_severity=4, auto_resolve=True)


def client_for(https_vigil, integration, *, suffix="/hooks/pagerduty"):
    base, trust = https_vigil
    return pagerduty.EventsApiV2Client(integration.key, base_url=base + suffix, verify=trust)


@pytest.mark.parametrize("suffix", ["/hooks/pagerduty", ""], ids=["hooks-base", "root-base"])
def test_trigger_acknowledge_resolve_with_a_dedup_key(https_vigil, integration, suffix):
    client = client_for(https_vigil, integration, suffix=suffix)
    sample = pagerduty_event(integration.key)
    dedup_key = client.send_event(
        "trigger",
        dedup_key=sample["dedup_key"],
        payload=sample["payload"],
        links=sample["links"],
        images=sample["images"],
        client=sample["client"],
        client_url=sample["client_url"],
    )
    assert dedup_key == "db-1/disk"
    delivery = WebhookDelivery.objects.get()
    assert delivery.dedup_key == "db-1/disk"
    assert delivery.headers["User-Agent"].startswith("python-pagerduty/")
    assert process_pending() == ["processed"]

    alert = Alert.objects.get()
    assert alert.fingerprint == "db-1/disk"
    # Unmatched by the alert rules: PagerDuty's severity "error" is Sev 2.
    assert (alert.severity_id, alert.rule) == (2, None)
    assert alert.labels == {
        "source": "db-1.prod.example.com",
        "component": "postgres",
        "group": "prod-database",
        "class": "disk",
        "severity": "error",
    }
    assert alert.raw["links"] == sample["links"]
    assert alert.raw["images"] == sample["images"]
    assert alert.raw["payload"]["custom_details"] == {
        "used_percent": 91,
        "mount": "/var/lib/postgresql",
    }
    assert "routing_key" not in alert.raw
    assert alert.starts_at.isoformat() == "2026-11-27T09:52:11+00:00"
    incident = Incident.objects.get()
    assert (incident.title, incident.severity_id) == ("Disk usage 91% on db-1", 2)

    assert client.acknowledge(dedup_key) == dedup_key
    process_pending()
    incident.refresh_from_db()
    alert.refresh_from_db()
    assert incident.status == "acknowledged"
    assert alert.acknowledged_at is not None
    ack = incident.timeline.get(kind=Kind.STATUS, data__action="acknowledge")
    assert ack.source == "webhook"

    assert client.resolve(dedup_key) == dedup_key
    process_pending()
    alert.refresh_from_db()
    incident.refresh_from_db()
    assert alert.status == "resolved"
    assert incident.status == "monitoring"


def test_trigger_without_a_dedup_key_gets_one_and_it_works_for_resolve(https_vigil, integration):
    client = client_for(https_vigil, integration)
    dedup_key = client.trigger("Queue depth above 10k", "worker-3", severity="warning")
    assert len(dedup_key) == 32
    # A second trigger without a key is another alert, another incident.
    other = client.trigger("Queue depth above 10k", "worker-3", severity="warning")
    assert other != dedup_key
    process_pending()
    assert Incident.objects.count() == 2
    assert set(Alert.objects.values_list("fingerprint", "severity_id")) == {
        (dedup_key, 3),
        (other, 3),
    }
    client.resolve(dedup_key)
    process_pending()
    assert Alert.objects.get(fingerprint=dedup_key).status == "resolved"
    assert Alert.objects.get(fingerprint=other).status == "firing"


def test_repeated_triggers_are_one_alert(https_vigil, integration):
    client = client_for(https_vigil, integration)
    for _ in range(3):
        client.trigger("Replica lag 30 s", "db-2", dedup_key="db-2/lag", severity="critical")
    process_pending()
    alert = Alert.objects.get()
    assert (alert.count, alert.severity_id) == (3, 1)
    assert Incident.objects.count() == 1


def test_odd_timestamp_becomes_now_and_is_recorded_as_such(https_vigil, integration):
    client = client_for(https_vigil, integration)
    # What the client's own timestamp helper produces: "+00:00" followed by "Z".
    client.trigger(
        "Cert expires in 3 days",
        "edge-1",
        severity="info",
        payload={"timestamp": "2026-11-27T11:59:00.000000+00:00Z"},
    )
    process_pending()
    alert = Alert.objects.get()
    assert alert.starts_at_estimated and alert.starts_at == alert.received_at
    assert alert.severity_id == 4
    incident = Incident.objects.get()
    assert incident.impact_started_at is None
    assert "start time was missing or unreadable" in (
        incident.timeline.filter(kind=Kind.ALERT).first().message
    )


def test_unknown_routing_key_is_refused_like_pagerduty(https_vigil, integration):
    base, trust = https_vigil
    client = pagerduty.EventsApiV2Client("0" * 32, base_url=base, verify=trust)
    with pytest.raises(pagerduty.HttpError) as raised:
        client.trigger("x", "y")
    assert raised.value.response.status_code == 400
    assert raised.value.response.json()["errors"] == ["Invalid routing key"]
    assert not WebhookDelivery.objects.exists()


def test_acknowledge_or_resolve_of_an_unknown_key_changes_nothing(https_vigil, integration):
    client = client_for(https_vigil, integration)
    assert client.acknowledge("never-triggered") == "never-triggered"
    assert client.resolve("never-triggered") == "never-triggered"
    assert process_pending() == ["processed", "processed"]
    assert not Incident.objects.exists()
    # The resolution is recorded (it may belong to an alert Vigil never saw fire).
    assert list(Alert.objects.values_list("status", "incident")) == [("resolved", None)]


# --- the rate limit per routing key -------------------------------------------------------------


def _pd_post(client, routing_key: str):
    return client.post(
        "/hooks/pagerduty/v2/enqueue",
        data=json.dumps(pagerduty_event(routing_key)),
        content_type="application/json",
    )


@pytest.mark.django_db
@override_settings(VIGIL_PAGERDUTY_RATE="5/minute")
def test_the_rate_limit_slides_across_the_minute_boundary(client, service):
    """5 events at 10:00:59 and 5 more at 10:01:01: a fixed window per minute let all ten
    through; the sliding window refuses the second five until the first leave it."""
    integration = make_integration("pagerduty", service=service)
    start = datetime(2026, 3, 2, 10, 0, 59, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        before = [_pd_post(client, integration.key) for _ in range(5)]
        traveller.move_to(start + timedelta(seconds=2))
        after = [_pd_post(client, integration.key) for _ in range(5)]
        traveller.move_to(start + timedelta(seconds=61))
        later = _pd_post(client, integration.key)

    assert [r.status_code for r in before] == [202] * 5
    assert [r.status_code for r in after] == [429] * 5
    assert {r["Retry-After"] for r in after} == {"59"}
    assert after[0].json()["status"] == "throttle event"
    assert later.status_code == 202
    assert WebhookDelivery.objects.filter(integration=integration).count() == 6


@pytest.mark.redis
@pytest.mark.django_db
@override_settings(VIGIL_PAGERDUTY_RATE="3/minute")
def test_events_are_accepted_while_the_cache_is_down(client, service, caplog):
    """A real Redis killed mid-test: the limit holds while it runs; after the kill events are
    let through (an alert is worth more than the limit) with a warning."""
    integration = make_integration("pagerduty", service=service)
    with redis_server() as server, override_settings(CACHES=redis_caches(server.url)):
        assert [_pd_post(client, integration.key).status_code for _ in range(4)] == [
            202,
            202,
            202,
            429,
        ]
        server.kill()
        with caplog.at_level(logging.WARNING):
            during = [_pd_post(client, integration.key).status_code for _ in range(3)]

    assert during == [202] * 3
    assert any(
        r.name == "incidents.ratelimit" and r.levelno == logging.WARNING for r in caplog.records
    )
    assert WebhookDelivery.objects.filter(integration=integration).count() == 6
