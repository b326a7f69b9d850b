"""Incidents written together (``incidents_create_many``, as a drain's batch of alerts writes a
storm's incidents) are the incidents ``incident_create`` writes one by one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.models import Incident, IncidentEvent, Service, Source
from incidents.services import incident_create
from incidents.services.common import timeline_record_many
from incidents.services.creation import incident_prepare, incidents_create_many
from tests.incidents.incident_rows import incidents_seen

pytestmark = pytest.mark.django_db


def specs(prefix: str, services: list[Service]) -> list[dict]:
    started = timezone.now() - timedelta(minutes=7)
    return [
        {"title": f"{prefix} checkout down", "severity": 1, "services": services[:1]},
        {
            "title": f"{prefix} search slow",
            "severity": 3,
            "services": services,
            "summary": f"{prefix} p99 over 2 s",
            "impact_started_at": started,
        },
        {"title": f"{prefix} nightly job late", "severity": 4, "paging": "none"},
        {
            "title": f"{prefix} login errors",
            "severity": 2,
            "urgency": "high",
            "detection_source": "customer_report",
            "customer_facing": False,
            "services": services[1:],
        },
    ]


def test_incidents_written_together_are_those_written_one_by_one(service):
    services = [service, Service.objects.create(slug="search", name="Search")]
    entries = []
    for spec in specs("one", services):
        incident_create(actor=None, source=Source.WEBHOOK, timeline=entries, **spec)
    timeline_record_many(entries=entries)
    first = Incident.objects.order_by("-pk").values_list("pk", flat=True).first()

    news = [
        incident_prepare(actor=None, source=Source.WEBHOOK, **spec)
        for spec in specs("many", services)
    ]
    with CaptureQueriesContext(connection) as queries:
        incidents_create_many(news)
    # Numbers, incidents, links, history records, their links, events: one statement each.
    assert len(queries) <= 6, [q["sql"][:60] for q in queries]
    timeline_record_many(entries=[{**new.entry(), "occurred_at": new.now} for new in news])

    strip = ("one ", "many ")
    one_by_one = incidents_seen(Incident.objects.filter(pk__lte=first), strip=strip)
    together = incidents_seen(Incident.objects.filter(pk__gt=first), strip=strip)
    assert len(together) == 4
    assert together == one_by_one
    numbers = list(Incident.objects.order_by("pk").values_list("number", flat=True))
    assert [int(number.rsplit("-", 1)[1]) for number in numbers] == list(range(1, 9))
    # Sev 1–2 are followed first.
    urgent = dict(IncidentEvent.objects.values_list("incident__title", "urgent"))
    assert urgent["many checkout down"] and urgent["many login errors"]
    assert not urgent["many search slow"]


def test_a_refused_incident_is_refused_before_anything_is_written():
    with pytest.raises(InvalidInput):
        incident_prepare(actor=None, source=Source.WEBHOOK, title="  ", severity=1)
    with pytest.raises(InvalidInput):
        incident_prepare(
            actor=None,
            source=Source.WEBHOOK,
            title="Late",
            severity=1,
            impact_started_at=timezone.now() + timedelta(days=2),
        )
    assert not Incident.objects.exists()
