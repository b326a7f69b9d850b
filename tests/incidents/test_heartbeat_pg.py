"""The heartbeat sweep under real concurrency, on PostgreSQL: sweeps running at the same moment
(each in its own thread and connection, released together by a barrier) open exactly one
"no signal" incident per silent integration, because each claims its rows with FOR UPDATE SKIP
LOCKED and clears their due time in the same transaction. A ping racing the sweeps either
comes first (no incident) or resolves the incident they opened."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client

from config.celery import app
from incidents.models import Incident, Integration, Status
from incidents.tasks import heartbeat_sweep_task
from tests.incidents.detection_fixtures import NOW, make_integration

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.timeout(240),
]

SWEEPS = 4
SILENT = 6
ROUNDS = 3


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread and database connection, all released at once;
    returns their results (an exception is returned, not raised)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def work(n: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=20)
            results[n] = calls[n]()
        except BaseException as exc:
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    return results


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def eager():
    """The resolve task a ping queues runs in the ping's thread, after its commit."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def test_concurrent_sweeps_open_exactly_one_incident_per_silent_integration(clock, service):
    for round_ in range(ROUNDS):
        silent = [
            make_integration(
                "heartbeat", name=f"Job {round_}-{n}", heartbeat_minutes=5, service=service
            )
            for n in range(SILENT)
        ]
        make_integration("heartbeat", name=f"Hourly {round_}", heartbeat_minutes=60)
        clock.shift(timedelta(minutes=6))

        results = race(*[heartbeat_sweep_task] * SWEEPS)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert sum(results) == SILENT, results

        opened = Incident.objects.filter(title__startswith=f"No signal from Job {round_}-")
        assert opened.count() == SILENT
        rows = Integration.objects.filter(pk__in=[i.pk for i in silent])
        assert sorted(rows.values_list("heartbeat_incident_id", flat=True)) == sorted(
            opened.values_list("pk", flat=True)
        )
        assert not rows.filter(heartbeat_due_at__isnull=False).exists()
        # Later sweeps find nothing more to open.
        assert race(*[heartbeat_sweep_task] * SWEEPS) == [0] * SWEEPS
    assert Incident.objects.count() == ROUNDS * SILENT


def test_a_ping_racing_the_sweeps_leaves_no_incident_open(clock, eager):
    jobs = [make_integration("heartbeat", name=f"Job {n}", heartbeat_minutes=5) for n in range(4)]
    clock.shift(timedelta(minutes=6))
    pinged, quiet = jobs[:2], jobs[2:]

    def pinger(integration: Integration) -> Callable[[], int]:
        return lambda: Client().get(f"/hooks/ping/{integration.key}/").status_code

    results = race(*[heartbeat_sweep_task] * SWEEPS, *[pinger(i) for i in pinged])
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert results[SWEEPS:] == [200] * len(pinged)

    for integration in pinged:
        integration.refresh_from_db()
        # Either the ping came first (nothing opened) or it resolved what a sweep opened.
        assert integration.heartbeat_incident_id is None
        assert integration.heartbeat_due_at == NOW + timedelta(minutes=11)
        assert not Incident.objects.filter(
            title__startswith=f"No signal from {integration.name} ", status=Status.OPEN
        ).exists()
    for integration in quiet:
        integration.refresh_from_db()
        assert integration.heartbeat_incident.status == Status.OPEN
    assert Incident.objects.filter(status=Status.OPEN).count() == len(quiet)
