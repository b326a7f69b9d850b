"""The maintenance sweep under concurrency, on PostgreSQL: sweeps started at the same moment
(two beats, or a beat and a button) move each window once: one start, one completion, one
interval per component and step."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from communications.models import ComponentStatusInterval, Maintenance
from communications.services.components import component_create
from communications.services.maintenance import maintenance_start, maintenance_sweep
from incidents.models import Source
from tests.factories import ServiceFactory
from tests.threads import in_threads

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_concurrent_sweeps_move_each_window_once():
    now = timezone.now()
    components = [
        component_create(
            service=ServiceFactory(slug=f"svc-{i}", public_name=f"Service {i}"),
            actor=None,
            at=now - timedelta(days=1),
        )
        for i in range(6)
    ]
    windows = []
    for i in range(20):
        window = Maintenance.objects.create(
            title=f"Window {i}",
            scheduled_for=now - timedelta(minutes=5),
            scheduled_until=now + timedelta(hours=1),
        )
        window.components.set(components[i % 3 : i % 3 + 3])
        windows.append(window)

    started = in_threads(*[lambda: maintenance_sweep(now=now)] * 3)
    assert sum(started) == 20
    assert set(Maintenance.objects.values_list("status", flat=True)) == {"in_progress"}
    steps = Counter(
        reason
        for window in windows
        for reason in window.history.values_list("history_change_reason", flat=True)
    )
    assert steps["started (system)"] == 20

    later = now + timedelta(hours=1, seconds=1)
    completed = in_threads(*[lambda: maintenance_sweep(now=later)] * 3)
    assert sum(completed) == 20
    assert set(Maintenance.objects.values_list("status", flat=True)) == {"completed"}
    for component in components[:5]:  # the windows cover the first five
        rows = list(
            ComponentStatusInterval.objects.filter(component=component)
            .order_by("started_at", "pk")
            .values_list("status", flat=True)
        )
        assert rows == ["operational", "under_maintenance", "operational"]


def test_a_button_and_the_sweep_at_the_same_moment_start_it_once():
    now = timezone.now()
    component = component_create(
        service=ServiceFactory(slug="checkout", public_name="Checkout"),
        actor=None,
        at=now - timedelta(days=1),
    )
    window = Maintenance.objects.create(
        title="Upgrade",
        scheduled_for=now - timedelta(seconds=1),
        scheduled_until=now + timedelta(hours=1),
    )
    window.components.set([component])
    in_threads(
        lambda: maintenance_sweep(now=now),
        lambda: maintenance_start(maintenance=window, actor=None, source=Source.ADMIN, now=now),
    )
    window.refresh_from_db()
    assert window.status == "in_progress"
    assert ComponentStatusInterval.objects.filter(component=component).count() == 2
    reasons = list(window.history.values_list("history_change_reason", flat=True))
    assert len([r for r in reasons if r and r.startswith("started")]) == 1
