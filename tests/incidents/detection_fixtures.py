"""Helpers shared by the webhook, alert and integration tests.

Payloads are the senders' documented shapes (``payloads/``, copied from each sender's
documentation and source). Their times are 2026-11-27 around 09:40 UTC, so tests run at
``NOW`` (time-machine) just after them.

Posting goes through the real endpoint with Django's test client; the processing task is
captured as the on-commit callback the view registers and then run by calling the task
itself, as a worker would (``process_pending``).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine

from incidents.detection.integrations import integration_create, integration_urls
from incidents.models import (
    Alert,
    DeliveryStatus,
    Incident,
    Integration,
    Source,
    WebhookDelivery,
)
from incidents.tasks import alert_delivery_process_task

PAYLOADS = Path(__file__).parent / "payloads"
NOW = datetime(2026, 11, 27, 9, 45, tzinfo=UTC)


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def alertmanager_payload() -> dict[str, Any]:
    return payload("alertmanager-webhook-v4-firing.json")


def grafana_payload() -> dict[str, Any]:
    return payload("grafana-webhook-v1-firing.json")


def pagerduty_event(routing_key: str, /, **changes: Any) -> dict[str, Any]:
    event = payload("pagerduty-events-v2-trigger.json")
    event["routing_key"] = routing_key
    event.update(changes)
    return event


def resolved(body: dict[str, Any], ends_at: str = "2026-11-27T09:44:30Z") -> dict[str, Any]:
    """The Alertmanager/Grafana notification of the same group once every alert resolved."""
    body = copy.deepcopy(body)
    body["status"] = "resolved"
    if "state" in body:
        body["state"] = "ok"
    for alert in body["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = ends_at
    return body


@pytest.fixture
def at_now():
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


def make_integration(kind: str, **fields: Any) -> Integration:
    fields.setdefault("name", f"{kind} test")
    return integration_create(actor=None, source=Source.ADMIN, kind=kind, **fields)


def hook_path(integration: Integration) -> str:
    urls = integration_urls(integration)
    return urlsplit(urls.get("webhook_url") or urls["events_url"]).path


def encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def post(client, path: str, body: Any, *, capture, content_type="application/json", **headers):
    """POST ``body`` as the sender would; returns (response, on-commit callbacks)."""
    with capture() as callbacks:
        response = client.generic(
            "POST", path, encode(body), content_type=content_type, headers=headers
        )
    return response, callbacks


def fire_generic(client, capture, integration: Integration, **data: Any):
    """POST the generic hook's JSON ``data`` (title "Alert" unless given), signed as the
    README's recipe signs it; asserts it was accepted and returns the response."""
    data.setdefault("title", "Alert")
    body = json.dumps(data).encode()
    response, _ = post(
        client,
        hook_path(integration),
        body,
        capture=capture,
        **vigil_headers(integration.secret, body),
    )
    assert response.status_code == 202, response.content
    return response


def storm_alert(number: int) -> dict[str, Any]:
    """An Alertmanager notification of a new group ``Storm<number>`` with one Sev 1 alert: one
    alert of a storm that opens an incident each."""
    body = copy.deepcopy(alertmanager_payload())
    name = f"Storm{number}"
    body["groupKey"] = f'{{}}:{{alertname="{name}"}}'
    body["groupLabels"] = {"alertname": name}
    body["alerts"] = body["alerts"][:1]
    body["alerts"][0]["labels"].update({"alertname": name, "severity": "critical"})
    body["alerts"][0]["fingerprint"] = f"{number:016x}"
    return body


def nothing_written() -> bool:
    """No delivery, alert or incident stored: what a refused request leaves."""
    return not (
        WebhookDelivery.objects.exists() or Alert.objects.exists() or Incident.objects.exists()
    )


def process_pending() -> list[str]:
    """Run the processing task of every pending delivery, oldest first, as a worker would."""
    ids = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).order_by("pk")
    return [alert_delivery_process_task(pk) for pk in ids.values_list("pk", flat=True)]


def grafana_signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    message = body if timestamp is None else timestamp.encode() + b":" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def vigil_signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """``X-Vigil-Signature``: over ``"{timestamp}.{body}"``, or (legacy) over the body alone."""
    message = body if timestamp is None else timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def vigil_headers(secret: str, body: bytes, *, timestamp: str | None = None) -> dict[str, str]:
    """The generic hook's headers as the README's recipe makes them: the current Unix time in
    ``X-Vigil-Timestamp`` and the signature over ``"{timestamp}.{body}"``."""
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    return {
        "X-Vigil-Timestamp": timestamp,
        "X-Vigil-Signature": vigil_signature(secret, body, timestamp),
    }
