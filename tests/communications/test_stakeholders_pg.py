"""The stakeholder sweep under concurrency, on PostgreSQL: sweeps started at the same moment send
each reminder and update once per (incident, group, due time); after a beat outage they catch up
once, late; a resolution racing a sweep sends one final message and nothing after it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from communications.models import SendKind, StakeholderSchedule, StakeholderSend
from communications.services.stakeholders import stakeholder_sweep
from escalation.models import Notification
from incidents.models import Incident, Source
from incidents.services import incident_create, incident_resolve
from tests.escalation.test_sweep_pg import in_threads
from tests.events import follow_events, followed

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

MIN = timedelta(minutes=1)


def sev1(count: int) -> list[Incident]:
    return [
        followed(incident_create)(
            actor=None, source=Source.SYSTEM, title=f"Checkout is down {n}", severity=1
        )
        for n in range(count)
    ]


def stakeholder_keys() -> list[str]:
    return list(
        Notification.objects.filter(idempotency_key__startswith="stakeholder:").values_list(
            "idempotency_key", flat=True
        )
    )


def test_sweeps_at_the_same_moment_send_each_update_and_reminder_once():
    incidents = sev1(6)
    start = max(StakeholderSchedule.objects.values_list("started_at", flat=True))
    for minutes in (20, 30, 60, 80, 90, 110, 120):
        now = start + minutes * MIN
        results = in_threads(*[lambda now=now: stakeholder_sweep(now=now, batch=4)] * 4)
        actions = Counter((a.incident, a.group, a.kind, a.due_at) for r in results for a in r)
        assert set(actions.values()) == {1}, actions

    sends = Counter(
        (s.incident_id, s.group.name, s.kind, s.due_at)
        for s in StakeholderSend.objects.select_related("group")
    )
    assert set(sends.values()) == {1}
    per_incident = Counter(
        (s.group.name, s.kind) for s in StakeholderSend.objects.select_related("group")
    )
    # Per incident: support reminded before +30, +90, +120 and sent at +30 (first), +60, +90,
    # +120 (no change); the executives reminded before +120 and sent their first update.
    assert per_incident == {
        ("Customer support", SendKind.REMINDER): 3 * 6,
        ("Customer support", SendKind.SCHEDULED): 1 * 6,
        ("Customer support", SendKind.NO_CHANGE): 3 * 6,
        ("Executive team", SendKind.REMINDER): 1 * 6,
        ("Executive team", SendKind.SCHEDULED): 1 * 6,
    }
    keys = stakeholder_keys()
    assert len(keys) == len(set(keys))
    # #support once per send, the three executives once per send, the lead once per reminder.
    assert len(keys) == 6 * (4 + 3 + 3 * 1 + 1)
    assert {i.pk for i in incidents} == set(
        StakeholderSend.objects.values_list("incident", flat=True)
    )


def test_after_a_beat_outage_concurrent_sweeps_catch_up_once_marked_late():
    sev1(4)
    start = max(StakeholderSchedule.objects.values_list("started_at", flat=True))
    now = start + 180 * MIN
    results = in_threads(*[lambda: stakeholder_sweep(now=now, batch=3)] * 4)

    actions = [a for r in results for a in r]
    assert Counter((a.group, a.kind, a.late) for a in actions) == {
        ("Customer support", SendKind.SCHEDULED, True): 4,
        ("Executive team", SendKind.SCHEDULED, True): 4,
    }
    assert StakeholderSend.objects.count() == 8
    schedules = StakeholderSchedule.objects.select_related("group")
    for schedule in schedules:
        if schedule.group.name == "Business units":
            assert schedule.next_due_at == schedule.started_at + 240 * MIN
        else:
            assert schedule.next_due_at == now + schedule.interval_minutes * MIN
    assert stakeholder_sweep(now=now) == []


def test_a_resolution_racing_the_sweep_sends_one_final_message_and_nothing_after():
    incidents = sev1(5)
    start = max(StakeholderSchedule.objects.values_list("started_at", flat=True))
    now = start + 30 * MIN

    def resolve_all() -> None:
        for incident in incidents:
            incident_resolve(
                incident=incident, actor=None, source=Source.SYSTEM, resolution="Rolled back."
            )
        follow_events()

    in_threads(resolve_all, lambda: stakeholder_sweep(now=now, batch=2))
    follow_events()
    stakeholder_sweep(now=now + 60 * MIN)

    for incident in incidents:
        finals = StakeholderSend.objects.filter(incident=incident, kind=SendKind.FINAL)
        assert sorted(finals.values_list("group__name", flat=True)) == [
            "Business units",
            "Customer support",
            "Executive team",
        ]
        first_final = min(finals.values_list("pk", flat=True))
        later = StakeholderSend.objects.filter(incident=incident, pk__gt=first_final)
        assert not later.exclude(kind=SendKind.FINAL).exists()
    assert set(StakeholderSchedule.objects.values_list("next_check_at", flat=True)) == {None}
