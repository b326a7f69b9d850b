"""The documentation sweep under concurrency, on PostgreSQL: sweeps started at the same moment
remind each incident manager once and record each miss once; a clock someone else holds is
skipped, not waited for."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections, transaction

from escalation.models import Notification
from incidents.models import Incident, Source, TimelineEntry
from incidents.services import incident_create, incident_transition
from reviews.models import DocumentationClock
from reviews.services.documentation import documentation_sweep
from tests.escalation.test_sweep_pg import in_threads
from tests.events import followed

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

HOUR = timedelta(hours=1)


def resolved(count: int) -> list[Incident]:
    incidents = []
    for n in range(count):
        incident = followed(incident_create)(
            actor=None, source=Source.SYSTEM, title=f"Checkout is down {n}", severity=3
        )
        for action in ("acknowledge", "investigate"):
            incident = followed(incident_transition)(
                incident=incident, action=action, actor=None, source=Source.SYSTEM
            )
        incidents.append(
            followed(incident_transition)(
                incident=incident,
                action="resolve",
                actor=None,
                source=Source.SYSTEM,
                resolution="Rolled back.",
            )
        )
    return incidents


def documentation_entries(what: str) -> Counter:
    return Counter(
        e.incident_id
        for e in TimelineEntry.objects.all()
        if (e.data or {}).get("documentation") == what
    )


def test_sweeps_at_the_same_moment_remind_once_and_record_each_miss_once():
    incidents = resolved(10)
    start = max(DocumentationClock.objects.values_list("resolved_at", flat=True))

    for hours, action in ((36, "reminder"), (48, "missed")):
        now = start + hours * HOUR
        results = in_threads(*[lambda now=now: documentation_sweep(now=now, batch=3)] * 4)
        actions = Counter((a.incident, a.action) for r in results for a in r)
        assert set(actions) == {(i.number, action) for i in incidents}
        assert set(actions.values()) == {1}

    notifications = Notification.objects.filter(
        idempotency_key__startswith="reviews-documentation:"
    )
    assert notifications.count() == 10
    assert set(documentation_entries("reminder").values()) == {1}
    assert documentation_entries("missed") == {i.pk: 1 for i in incidents}
    assert set(DocumentationClock.objects.values_list("next_check_at", flat=True)) == {None}
    assert documentation_sweep(now=start + 60 * HOUR) == []


def test_a_clock_someone_else_holds_is_skipped_not_waited_for():
    held, other = resolved(2)
    now = max(DocumentationClock.objects.values_list("due_at", flat=True))
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            DocumentationClock.objects.select_for_update().get(incident=held)
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=lambda: (hold(), connections.close_all()), daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        assert [a.incident for a in documentation_sweep(now=now)] == [other.number]
    finally:
        release.set()
        holder.join(10)

    assert [a.incident for a in documentation_sweep(now=now)] == [held.number]
