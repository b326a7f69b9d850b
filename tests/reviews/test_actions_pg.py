"""Action item reminders under concurrency, on PostgreSQL: sweeps started at the same moment
send each owner each reminder once (the items are claimed with SKIP LOCKED and the reminder
recorded on the claimed row)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine

from escalation.models import Notification
from incidents.models import Source
from reviews.models import ActionItem, ReviewPolicy
from reviews.services.action_reminders import action_item_reminder_sweep
from reviews.services.actions import action_item_create
from tests.escalation.test_sweep_pg import in_threads
from tests.factories import IncidentFactory, UserFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_concurrent_sweeps_send_each_reminder_once():
    policy = ReviewPolicy.objects.order_by("pk").first() or ReviewPolicy()
    policy.action_reminder_days, policy.workday_start, policy.time_zone = 2, time(9, 0), "UTC"
    policy.save()
    owner = UserFactory(username="olga")
    with time_machine.travel(T0, tick=False):
        incident = IncidentFactory(status="resolved")
        for n in range(12):
            action_item_create(
                incident=incident,
                actor=None,
                source=Source.SYSTEM,
                kind="immediate_fix",
                title=f"Fix {n}",
                owner=owner,
                due_date=T0.date() + timedelta(days=2 + n % 3),
            )

    # Due on the 4th, 5th and 6th (four items each). At each moment, every item with a
    # reminder passed gets the latest one, once, whichever sweep claimed it.
    expected = {
        datetime(2026, 3, 3, 9, 0, tzinfo=UTC): 8,  # before (4th: also its before), before (5th)
        datetime(2026, 3, 4, 9, 0, tzinfo=UTC): 8,  # due (4th), before (6th)
        datetime(2026, 3, 6, 9, 0, tzinfo=UTC): 12,  # overdue (4th, 5th), due (6th)
    }
    for moment, count in expected.items():
        results = in_threads(*[lambda m=moment: action_item_reminder_sweep(now=m, batch=3)] * 4)
        sent = [(r.item, r.reminder) for result in results for r in result]
        assert len(sent) == len(set(sent)) == count, (moment, sent)
        # Running it again at the same moment sends nothing more.
        assert action_item_reminder_sweep(now=moment) == []

    keys = Counter(
        Notification.objects.filter(
            idempotency_key__startswith="reviews:action-reminder"
        ).values_list("idempotency_key", flat=True)
    )
    assert sum(keys.values()) == 28 and set(keys.values()) == {1}
    for item in ActionItem.objects.all():
        for name in item.reminders_sent:
            assert keys[f"reviews:action-reminder:{item.pk}:{item.due_date}:{name}"] == 1
