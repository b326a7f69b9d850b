"""Queues by job: monitoring intake, paging (Sev 1–2 urgent), bulk messages and the sweeps each
have a queue, every task is routed to one a Procfile worker consumes, and a worker consuming
several takes them in priority order on Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.celery import app

ROOT = Path(__file__).resolve().parent.parent


def _tasks() -> list[str]:
    """Every task of Vigil's apps (imported as a worker imports them)."""
    app.loader.import_default_modules()
    return [name for name in app.tasks if not name.startswith("celery.")]


def _route(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("incidents.alert_deliveries_drain", "vigil.intake"),
        ("incidents.alert_delivery_process", "vigil.intake"),
        ("incidents.heartbeat_incident_resolve", "vigil.intake"),
        ("incidents.events_follow", "vigil"),  # the kick names vigil.urgent for Sev 1-2
        ("escalation.notification_send", "vigil"),
        ("communications.fanout_run", "vigil.bulk"),
        ("escalation.notification_send_batch", "vigil.bulk"),
        ("kpis.monthly_report", "vigil.bulk"),
        ("escalation.sweep", "vigil.sweeps"),
        ("incidents.events_sweep", "vigil.sweeps"),
        ("incidents.alert_delivery_sweep", "vigil.sweeps"),
    ],
)
def test_each_job_has_its_queue(task, queue):
    assert task in _tasks()
    assert _route(task) == queue


def _procfile_queues() -> dict[str, list[str]]:
    queues = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        found = re.search(r"--queues (\S+)", command)
        if found:
            queues[name.strip()] = found.group(1).split(",")
    return queues


def test_the_procfile_workers_consume_every_queue_and_urgent_alone(settings):
    queues = _procfile_queues()
    assert queues["urgent"] == [settings.VIGIL_URGENT_QUEUE]
    consumed = {q for names in queues.values() for q in names}
    routed = {_route(name) for name in _tasks()}
    assert routed <= consumed
    assert consumed == set(settings.VIGIL_ALL_QUEUES)
    # The general worker takes the sweeps first (short, and they fire escalation steps on
    # time), then intake, and bulk messages last.
    assert queues["worker"] == ["vigil.sweeps", "vigil.intake", "vigil", "vigil.bulk"]


def test_on_redis_a_worker_takes_its_queues_in_the_order_listed(monkeypatch):
    import importlib

    import config.settings as vigil_settings

    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    try:
        reloaded = importlib.reload(vigil_settings)
        assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "priority"
    finally:
        monkeypatch.undo()
        importlib.reload(vigil_settings)
