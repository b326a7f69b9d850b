"""Deduplication and grouping under real concurrency, on PostgreSQL: 100 identical deliveries
posted at once over HTTP and processed by parallel workers give one alert counted 100 times
and one incident; and with a real Celery worker, deliveries are processed end to end and a
delivery whose task was lost is picked up by the beat sweep."""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from incidents.models import Alert, AlertGroup, DeliveryStatus, Incident, WebhookDelivery
from incidents.tasks import alert_delivery_process_task
from tests import workers
from tests.incidents.detection_fixtures import alertmanager_payload, hook_path, make_integration
from tests.workers import wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
DELIVERIES = 100
celery_worker = workers.celery_worker


def post_all(url: str, bodies: list[bytes], *, token: str) -> list[int]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def send(body: bytes) -> int:
        return requests.post(url, data=body, headers=headers, timeout=30).status_code

    # 20 at a time: each live-server request holds its own database connection.
    with ThreadPoolExecutor(max_workers=20) as pool:
        return list(pool.map(send, bodies))


def process_in_parallel(workers: int = 8) -> list[str]:
    """Every pending delivery, by ``workers`` threads with their own connections, as parallel
    Celery workers would."""
    pending: queue.Queue[int] = queue.Queue()
    for pk in WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True):
        pending.put(pk)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(workers)

    def work() -> None:
        start.wait()
        try:
            while True:
                try:
                    pk = pending.get_nowait()
                except queue.Empty:
                    return
                outcome = alert_delivery_process_task(pk)
                with lock:
                    outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


def test_one_hundred_identical_deliveries_at_once_give_one_alert_and_one_incident(
    live_server, service
):
    integration = make_integration("alertmanager", service=service)
    body = alertmanager_payload()
    body["alerts"] = body["alerts"][:1]
    raw = json.dumps(body).encode()
    statuses = post_all(
        live_server.url + hook_path(integration), [raw] * DELIVERIES, token=integration.secret
    )
    assert statuses == [202] * DELIVERIES
    assert WebhookDelivery.objects.count() == DELIVERIES

    outcomes = process_in_parallel()
    assert outcomes.count("processed") == DELIVERIES, outcomes
    assert not WebhookDelivery.objects.exclude(status=DeliveryStatus.PROCESSED).exists()
    alert = Alert.objects.get()
    assert alert.count == DELIVERIES
    incident = Incident.objects.get()
    assert alert.incident == incident
    assert AlertGroup.objects.get().incident == incident


def test_one_hundred_alerts_of_one_group_at_once_open_one_incident(live_server, service):
    integration = make_integration("alertmanager", service=service)
    bodies = []
    for index in range(DELIVERIES):
        body = alertmanager_payload()
        body["alerts"] = body["alerts"][:1]
        body["alerts"][0]["fingerprint"] = f"instance-{index:03d}"
        body["alerts"][0]["labels"]["instance"] = f"web-{index}:8080"
        bodies.append(json.dumps(body).encode())
    statuses = post_all(live_server.url + hook_path(integration), bodies, token=integration.secret)
    assert statuses == [202] * DELIVERIES

    outcomes = process_in_parallel()
    assert outcomes.count("processed") == DELIVERIES, outcomes
    incident = Incident.objects.get()
    assert Alert.objects.filter(incident=incident, count=1).count() == DELIVERIES
    assert incident.timeline.filter(kind="alert").count() == DELIVERIES


@pytest.mark.redis
def test_a_real_worker_processes_deliveries_and_the_sweep_recovers_a_lost_task(
    client, celery_worker, service
):
    integration = make_integration("alertmanager", service=service, secret="")
    worker = celery_worker.worker(
        {"VIGIL_ALERT_REQUEUE_AFTER_SECONDS": "1", "VIGIL_ALERT_SWEEP_SECONDS": "1"},
        concurrency=2,
    )
    # Accepted and committed: the task is published after commit and the worker runs it.
    response = client.post(
        hook_path(integration), alertmanager_payload(), content_type="application/json"
    )
    assert response.status_code == 202
    wait_for(
        lambda: Alert.objects.count() == 2 and Incident.objects.count() == 1,
        timeout=60,
        what="the worker to process the delivery",
    )

    # A delivery whose task never reached the broker (stored, never queued).
    lost = alertmanager_payload()
    lost["groupKey"] = "{}:lost"
    lost["alerts"][0]["fingerprint"] = "lost-1"
    lost["alerts"] = lost["alerts"][:1]
    delivery = WebhookDelivery.objects.create(integration=integration, body=json.dumps(lost))
    celery_worker.beat({"VIGIL_ALERT_REQUEUE_AFTER_SECONDS": "1", "VIGIL_ALERT_SWEEP_SECONDS": "1"})
    wait_for(
        lambda: WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PROCESSED
        ).exists(),
        timeout=90,
        what="the sweep to queue the lost delivery and the worker to process it",
    )
    assert Alert.objects.get(fingerprint="lost-1").incident is not None
    assert Incident.objects.count() == 2
    assert worker.alive
