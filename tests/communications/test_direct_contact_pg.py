"""Enterprise direct contact under concurrency, on PostgreSQL: two handlings of an incident's
events at the same moment (its creation and a severity change, a retried handler) create one task
per customer, and sweeps started at once remind each owner once per reminder."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from communications.handlers import direct_contact_on_event
from communications.models import DirectContactTask
from communications.services.customers import customer_create
from communications.services.direct_contact import direct_contact_sweep
from escalation.models import Notification
from incidents.events import INCIDENT_CREATED, INCIDENT_SEVERITY_CHANGED
from incidents.models import IncidentEvent, Source, TimelineEntry
from incidents.services import incident_change_severity, incident_create
from tests.escalation.test_sweep_pg import in_threads
from tests.factories import ServiceFactory, UserFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

MIN = timedelta(minutes=1)


@pytest.fixture
def affected():
    checkout = ServiceFactory(slug="checkout", name="Checkout", customer_facing=True)
    owner = UserFactory(username="olivia")
    for n in range(8):
        customer_create(
            actor=None,
            source=Source.SYSTEM,
            name=f"Customer {n}",
            plan="enterprise",
            has_sla=True,
            account_owner=owner,
            services=[checkout],
        )
    return checkout


def handle(event: IncidentEvent) -> None:
    # As the dispatcher runs a handler: in a transaction of its own.
    with transaction.atomic():
        direct_contact_on_event(event)


def test_concurrent_handlings_create_one_task_per_customer(affected):
    incident = incident_create(
        actor=None,
        source=Source.SYSTEM,
        title="Checkout is down",
        severity=2,
        services=[affected],
        customer_facing=True,
    )
    incident_change_severity(
        incident=incident, actor=None, source=Source.SYSTEM, severity=1, reason="Worse."
    )
    created = IncidentEvent.objects.get(incident=incident, name=INCIDENT_CREATED)
    raised = IncidentEvent.objects.get(incident=incident, name=INCIDENT_SEVERITY_CHANGED)

    in_threads(*[lambda e=e: handle(e) for e in (created, raised, created, raised)])

    per_customer = Counter(
        DirectContactTask.objects.filter(incident=incident).values_list("customer_id", flat=True)
    )
    assert len(per_customer) == 8
    assert set(per_customer.values()) == {1}
    entries = TimelineEntry.objects.filter(incident=incident, data__status="created")
    assert entries.count() == 8
    assigned = Notification.objects.filter(idempotency_key__endswith=":assigned")
    assert assigned.count() == 8


def test_concurrent_sweeps_remind_once_per_task_and_reminder(affected):
    incident = incident_create(
        actor=None,
        source=Source.SYSTEM,
        title="Checkout is down",
        severity=1,
        services=[affected],
        customer_facing=True,
    )
    handle(IncidentEvent.objects.get(incident=incident, name=INCIDENT_CREATED))
    start = DirectContactTask.objects.order_by("created_at").first().created_at

    for minutes in (30, 60):
        now = max(start, timezone.now()) + minutes * MIN + MIN
        results = in_threads(*[lambda now=now: direct_contact_sweep(now=now, batch=3)] * 4)
        assert sum(results) == 8

    keys = Counter(
        n.idempotency_key.rsplit(":", 1)[1]
        for n in Notification.objects.filter(idempotency_key__startswith="comms-direct-contact:")
    )
    assert keys == {"assigned": 8, "1": 8, "2": 8}
    assert set(DirectContactTask.objects.values_list("reminders_sent", flat=True)) == {2}
