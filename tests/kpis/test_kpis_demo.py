"""``manage.py kpis_demo``: months of incident history played through the services, on top of
``demo_data`` and a customer to survey; loaded once; refused where the other
demos are."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from communications.services.customers import customer_create
from incidents.events import INCIDENT_CREATED, subscribed_handlers
from incidents.models import Incident, IncidentEvent, Service, Source, Status
from kpis.models import KpiMonth, MonthlyReport, SurveyInvitation
from reviews.models import ActionItem, Review, ReviewStatus

pytestmark = pytest.mark.django_db

LOAD = {} if connection.vendor == "sqlite" else {"force": True}
NOW = datetime.fromisoformat("2026-11-05T10:00:00+00:00")


def run(command: str, **options) -> str:
    out = io.StringIO()
    call_command(command, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def loaded() -> str:
    with override_settings(DEBUG=True), time_machine.travel(NOW, tick=False):
        run("demo_data", **LOAD)
        # The survey's customers (what status_demo adds, without its 90 days of status page).
        customer_create(
            actor=None,
            source=Source.ADMIN,
            name="Northwind Traders",
            services=list(Service.objects.filter(customer_facing=True)),
            contacts=[{"name": "Helen Park", "email": "helen@northwind.example"}],
        )
        before = set(Incident.objects.values_list("pk", flat=True))
        out = run("kpis_demo", months=1, **LOAD)
    out_incidents = Incident.objects.exclude(pk__in=before)
    return out, out_incidents


def test_history_through_the_services_loaded_once(loaded):
    out, incidents = loaded
    assert "KPI demo ready" in out
    months = {i.detected_at.strftime("%Y-%m") for i in incidents}
    assert months == {"2026-10", "2026-11"}
    assert 20 <= incidents.filter(detected_at__month=10).count() <= 40
    # Every step at its own moment, in the past, in order.
    for incident in incidents:
        assert incident.detected_at < NOW - timedelta(hours=5)
        assert incident.created_at == incident.detected_at or incident.duplicate_of_id
        assert incident.timeline.exists()
        if incident.impact_started_at:
            lag = incident.detected_at - incident.impact_started_at
            assert timedelta(minutes=1) <= lag <= timedelta(minutes=30)
        if incident.status in (Status.RESOLVED, Status.CLOSED):
            respond = incident.acknowledged_at - incident.detected_at
            assert timedelta(minutes=2) <= respond <= timedelta(minutes=80)
            assert incident.acknowledged_at < incident.resolved_at < NOW
    assert set(incidents.values_list("severity_id", flat=True)) >= {2, 3, 4}
    assert incidents.filter(impact_started_at__isnull=True).exists()  # not measurable
    assert incidents.filter(status=Status.CANCELLED).exists()
    assert incidents.filter(duplicate_of__isnull=False).exists()
    assert len(set(incidents.values_list("detection_source", flat=True))) >= 4
    # Old incidents are closed with their report complete; the last two days' only resolved.
    old = incidents.filter(detected_at__lt=NOW - timedelta(days=5)).exclude(status=Status.CANCELLED)
    assert set(old.values_list("status", flat=True)) == {Status.CLOSED}
    assert all(i.root_cause and i.business_impact for i in old)
    # Reviews with a root-cause category and action items; survey ratings.
    reviews = Review.objects.filter(incident__in=incidents, status=ReviewStatus.PUBLISHED)
    assert reviews.exists() and not reviews.filter(cause_category="").exists()
    assert ActionItem.objects.filter(incident__in=incidents, status="done").exists()
    assert SurveyInvitation.objects.filter(incident__in=incidents, rating__isnull=False).exists()
    # The followers were not subscribed: nothing is left for the worker to replay; they are
    # subscribed again afterwards.
    assert not IncidentEvent.objects.filter(incident__in=incidents, status="pending").exists()
    assert "escalation" in {h.name for h in subscribed_handlers(INCIDENT_CREATED)}
    # The dashboard's stored months and the whole month's report are there at once.
    assert set(KpiMonth.objects.filter(stale=False).values_list("month", flat=True)) >= {
        date(2026, 10, 1),
        date(2026, 11, 1),
    }
    report = MonthlyReport.objects.get(month=date(2026, 10, 1))
    assert report.markdown and report.emailed_at is None

    # A second run adds nothing (one load for both: the demo is the slow part of this file).
    with override_settings(DEBUG=True), time_machine.travel(NOW, tick=False):
        counts = (Incident.objects.count(), Review.objects.count(), IncidentEvent.objects.count())
        assert "already there" in run("kpis_demo", months=1, **LOAD)
    assert counts == (
        Incident.objects.count(),
        Review.objects.count(),
        IncidentEvent.objects.count(),
    )


def test_history_sends_no_email(loaded):
    """Months-old review and survey invitations are not queued to go out at the first start."""
    from escalation.models import Notification

    _, incidents = loaded
    assert incidents.exists()
    assert SurveyInvitation.objects.filter(incident__in=incidents).exists()
    assert Review.objects.filter(incident__in=incidents).exists()
    assert not Notification.objects.filter(incident__in=incidents).exists()


def test_refused_with_debug_off_and_nothing_changed():
    with override_settings(DEBUG=False), pytest.raises(CommandError, match="Refusing"):
        run("kpis_demo")
    assert not Incident.objects.exists()


def test_needs_demo_data_first():
    with override_settings(DEBUG=True), pytest.raises(CommandError, match="demo_data"):
        run("kpis_demo", **LOAD)
    assert not Incident.objects.exists()
