"""/metrics: the Prometheus exposition, off unless a token or an allowlist is set, then the
incidents, SLA breaches, outbox, event backlog, sweep lag and this month's KPIs, in a bounded
number of queries."""

from __future__ import annotations

import runpy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

import config
from escalation.health import ESCALATION_SWEEP_KEY, SLA_SWEEP_KEY
from escalation.models import Notification, NotificationStatus
from escalation.outbox import notification_enqueue
from incidents.models import EventStatus, IncidentEvent
from kpis.selectors import kpi_results, period_month
from tests.factories import IncidentFactory

from .history import incident_at

pytestmark = pytest.mark.django_db

URL = "/metrics"
TOKEN = "s3cret-scrape-token-0123456789"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def heartbeats():
    cache.delete_many([ESCALATION_SWEEP_KEY, SLA_SWEEP_KEY])
    yield
    cache.delete_many([ESCALATION_SWEEP_KEY, SLA_SWEEP_KEY])


@pytest.fixture
def token(settings):
    settings.VIGIL_METRICS_TOKEN = TOKEN
    settings.VIGIL_METRICS_ALLOW = []


@pytest.fixture
def scraper(token):
    return Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def parse(response) -> dict[tuple[str, frozenset], float]:
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.name.startswith("vigil_") and family.documentation
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def series(samples, name) -> dict[frozenset, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


# --- Protection ----------------------------------------------------------------------------------


def test_off_unless_a_token_or_an_allowlist_is_set(client, settings):
    settings.VIGIL_METRICS_TOKEN = ""
    settings.VIGIL_METRICS_ALLOW = []
    assert client.get(URL).status_code == 404
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_the_token_opens_it(scraper):
    response = scraper.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-store" in response["Cache-Control"]
    assert scraper.head(URL).status_code == 200


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="vigil-metrics"'),
        ("Bearer ", 'Bearer realm="vigil-metrics"'),
        (f"Token {TOKEN}", 'Bearer realm="vigil-metrics"'),
        ("Bearer wrong-token-0123456789", 'Bearer realm="vigil-metrics", error="invalid_token"'),
        (f"Bearer {TOKEN}x", 'Bearer realm="vigil-metrics", error="invalid_token"'),
        (f"Bearer {TOKEN[:-1]}", 'Bearer realm="vigil-metrics", error="invalid_token"'),
    ],
)
def test_a_missing_or_wrong_token_is_a_401(token, authorization, challenge):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = Client(**headers).get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == challenge
    assert b"vigil_" not in response.content


def test_only_reads(scraper):
    assert scraper.post(URL).status_code == 405


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("192.0.2.7", 200),  # listed as a single address
        ("192.0.2.8", 403),
        ("10.20.30.40", 200),  # in 10.0.0.0/8
        ("11.0.0.1", 403),
        ("::ffff:10.0.0.9", 200),  # IPv4 on a dual-stack listener
        ("2001:db8:5::1", 200),  # in 2001:db8::/32
        ("2001:db9::1", 403),
    ],
)
def test_the_allowlist_takes_addresses_and_networks(settings, address, status):
    settings.VIGIL_METRICS_TOKEN = ""
    settings.VIGIL_METRICS_ALLOW = ["192.0.2.7", "10.0.0.0/8", "2001:db8::/32"]
    response = Client(REMOTE_ADDR=address).get(URL)
    assert response.status_code == status
    assert (b"vigil_incidents_active" in response.content) is (status == 200)


def test_the_allowlist_reads_x_forwarded_for_only_behind_configured_proxies(settings):
    settings.VIGIL_METRICS_TOKEN = ""
    settings.VIGIL_METRICS_ALLOW = ["10.0.0.0/8"]
    spoofed = {"REMOTE_ADDR": "203.0.113.5", "HTTP_X_FORWARDED_FOR": "10.0.0.1"}
    assert Client(**spoofed).get(URL).status_code == 403

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxied = {"REMOTE_ADDR": "172.16.0.2", "HTTP_X_FORWARDED_FOR": "10.0.0.1"}
    assert Client(**proxied).get(URL).status_code == 200
    outside = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    assert Client(**outside).get(URL).status_code == 403


def test_with_both_a_scrape_needs_both(settings):
    settings.VIGIL_METRICS_TOKEN = TOKEN
    settings.VIGIL_METRICS_ALLOW = ["10.0.0.0/8"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert Client(REMOTE_ADDR="203.0.113.5", **bearer).get(URL).status_code == 403
    assert Client(REMOTE_ADDR="10.0.0.5").get(URL).status_code == 401
    assert Client(REMOTE_ADDR="10.0.0.5", **bearer).get(URL).status_code == 200


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VIGIL_METRICS_TOKEN", "short", "at least 16 characters"),
        ("VIGIL_METRICS_ALLOW", "10.0.0.0/8,intranet", "'intranet' is not an IP address"),
    ],
)
def test_bad_settings_stop_the_start(monkeypatch, variable, value, message):
    monkeypatch.setenv("DJANGO_DEBUG", "1")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        runpy.run_path(str(Path(config.__file__).parent / "settings.py"))


# --- What it shows -------------------------------------------------------------------------------


def enqueue(key: str) -> Notification:
    return notification_enqueue(
        incident=None,
        channel="email",
        recipient="im@example.org",
        subject="s",
        body="b",
        template="page",
        reason="test",
        idempotency_key=key,
    )


@pytest.fixture
def state():
    """At NOW: Sev 1 waiting for acknowledgement past its 15 minutes, Sev 1 acknowledged but past
    its 4 hours, Sev 2 within its targets; a resolved and a cancelled one (not active). Two
    notifications pending (the older 3 minutes old), one failed. The escalation sweep ran 42 s
    ago; the SLA sweep never did."""
    with time_machine.travel(NOW - timedelta(hours=5), tick=False):
        IncidentFactory(severity=1, status="acknowledged")
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        IncidentFactory(severity=1)
        IncidentFactory(severity=3, status="resolved")
        IncidentFactory(severity=4, status="cancelled")
    with time_machine.travel(NOW - timedelta(minutes=10), tick=False):
        IncidentFactory(severity=2, status="investigating")
    with time_machine.travel(NOW - timedelta(minutes=3), tick=False):
        enqueue("metrics:old")
    with time_machine.travel(NOW, tick=False):
        enqueue("metrics:new")
        failed = enqueue("metrics:failed")
    Notification.objects.filter(pk=failed.pk).update(
        status=NotificationStatus.FAILED, failed_at=NOW - timedelta(days=3)
    )
    cache.set(ESCALATION_SWEEP_KEY, (NOW - timedelta(seconds=42)).isoformat(), timeout=None)


def test_incidents_breaches_outbox_events_and_sweeps(scraper, state):
    with time_machine.travel(NOW, tick=False):
        samples = parse(scraper.get(URL))

    assert series(samples, "vigil_incidents_active") == {
        frozenset({("severity", "1")}): 2,
        frozenset({("severity", "2")}): 1,
        frozenset({("severity", "3")}): 0,
        frozenset({("severity", "4")}): 0,
    }
    breached = series(samples, "vigil_sla_breached_active")
    assert len(breached) == 8  # both targets, every severity level
    assert {dict(labels)["target"]: n for labels, n in breached.items() if n} == {
        "response": 1,
        "resolution": 1,
    }
    assert value(samples, "vigil_sla_breached_active", target="response", severity="1") == 1
    assert value(samples, "vigil_sla_breached_active", target="resolution", severity="1") == 1

    assert value(samples, "vigil_outbox_backlog", state="pending") == 2
    assert value(samples, "vigil_outbox_backlog", state="sending") == 0
    assert value(samples, "vigil_outbox_backlog", state="failed") == 1
    assert value(samples, "vigil_outbox_failed_last_24h") == 0  # failed three days ago
    assert value(samples, "vigil_outbox_oldest_pending_age_seconds") == pytest.approx(180)

    unfinished = IncidentEvent.objects.filter(
        status__in=[EventStatus.PENDING, EventStatus.RUNNING]
    ).count()
    assert unfinished >= 5  # each incident's events, never followed here
    assert value(samples, "vigil_events_backlog") == unfinished
    assert value(samples, "vigil_events_oldest_due_age_seconds") == pytest.approx(5 * 3600)

    assert series(samples, "vigil_sweep_lag_seconds") == {frozenset({("sweep", "escalation")}): 42}

    assert series(samples, "vigil_scrape_collector_success") == {
        frozenset({("collector", name)}): 1
        for name in ("incidents", "outbox", "events", "sweeps", "kpis")
    }


def test_an_empty_vigil_shows_zeros(scraper):
    samples = parse(scraper.get(URL))
    assert set(series(samples, "vigil_incidents_active").values()) == {0}
    assert len(series(samples, "vigil_incidents_active")) == 4
    assert value(samples, "vigil_outbox_oldest_pending_age_seconds") == 0
    assert value(samples, "vigil_events_oldest_due_age_seconds") == 0
    assert series(samples, "vigil_sweep_lag_seconds") == {}


def test_kpis_of_the_current_month_in_base_units(scraper):
    nov = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    # Detected 4 and 6 minutes into the impact, acknowledged after 10 and 20 minutes, resolved
    # after 2 and 3 hours, without escalation (first contact); one without an impact-start
    # time (not measurable for MTTD) and one of October (another month).
    incident_at(nov, severity=1, impact_before=timedelta(minutes=4))
    incident_at(
        nov + timedelta(days=1),
        severity=1,
        impact_before=timedelta(minutes=6),
        ack_after=timedelta(minutes=20),
        resolve_after=timedelta(hours=3),
    )
    incident_at(nov + timedelta(days=2), impact_before=None, ack_after=None, resolve_after=None)
    incident_at(nov - timedelta(days=10), impact_before=timedelta(hours=5))

    with time_machine.travel(NOW, tick=False):
        samples = parse(scraper.get(URL))

    def kpi(name, slug, unit, **labels):
        return value(samples, name, kpi=slug, unit=unit, **labels)

    assert kpi("vigil_kpi_value", "mttd", "seconds", statistic="mean") == pytest.approx(300)
    assert kpi("vigil_kpi_value", "mttd", "seconds", statistic="p90") == pytest.approx(360)
    assert kpi("vigil_kpi_target", "mttd", "seconds", statistic="mean") == 300
    assert kpi("vigil_kpi_met", "mttd", "seconds", statistic="mean") == 1
    assert kpi("vigil_kpi_sample_size", "mttd", "seconds") == 2
    assert kpi("vigil_kpi_unmeasurable", "mttd", "seconds") == 1

    respond = ("time-to-respond", "seconds")
    assert kpi("vigil_kpi_value", *respond, statistic="mean") == pytest.approx(900)
    assert kpi("vigil_kpi_target", *respond, statistic="mean") == 900
    assert kpi("vigil_kpi_unmeasurable", *respond) == 1

    resolve = ("time-to-resolve-sev1", "seconds")
    assert kpi("vigil_kpi_value", *resolve, statistic="mean") == pytest.approx(9000)
    assert kpi("vigil_kpi_target", *resolve, statistic="mean") == 4 * 3600
    assert kpi("vigil_kpi_met", *resolve, statistic="mean") == 1

    first_contact = ("first-contact-resolution", "ratio")
    assert kpi("vigil_kpi_value", *first_contact, statistic="mean") == pytest.approx(1.0)
    assert kpi("vigil_kpi_target", *first_contact, statistic="mean") == pytest.approx(0.8)
    assert kpi("vigil_kpi_sample_size", *first_contact) == 2

    # No rating yet: a target and a sample of 0, no value and no verdict.
    satisfaction = ("customer-satisfaction", "score")
    assert kpi("vigil_kpi_target", *satisfaction, statistic="mean") == 4
    assert kpi("vigil_kpi_sample_size", *satisfaction) == 0
    assert (
        series(samples, "vigil_kpi_value")
        .keys()
        .isdisjoint(
            {
                frozenset({("kpi", "customer-satisfaction"), ("unit", "score"), ("statistic", s)})
                for s in ("mean", "median", "p90")
            }
        )
    )
    assert kpi("vigil_kpi_met", *satisfaction, statistic="mean") is None


def test_a_missed_kpi_reads_0(scraper):
    incident_at(datetime(2026, 11, 3, 10, 0, tzinfo=UTC), impact_before=timedelta(minutes=30))
    with time_machine.travel(NOW, tick=False):
        samples = parse(scraper.get(URL))
    assert value(samples, "vigil_kpi_met", kpi="mttd", unit="seconds", statistic="mean") == 0
    assert value(samples, "vigil_kpi_value", kpi="mttd", unit="seconds", statistic="mean") == 1800


def test_a_part_that_fails_is_left_out_and_said(scraper, state, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("KPI computation broke")

    monkeypatch.setattr("kpis.metrics.kpi_results", broken)
    with time_machine.travel(NOW, tick=False):
        samples = parse(scraper.get(URL))
    assert value(samples, "vigil_scrape_collector_success", collector="kpis") == 0
    assert value(samples, "vigil_scrape_collector_success", collector="outbox") == 1
    assert series(samples, "vigil_kpi_target") == {}
    assert value(samples, "vigil_outbox_backlog", state="pending") == 2


# The exposition's own reads: active incidents by severity (1), breaches by target (2), the
# outbox backlog (2), the event backlog (2), the KPI policy's time zone (1); the KPI
# computation's own queries come on top (a few per active definition, whatever the data).
OWN_QUERIES = 8


def test_the_query_count_is_fixed_whatever_the_data(scraper, state, django_assert_max_num_queries):
    with time_machine.travel(NOW, tick=False):
        with CaptureQueriesContext(connection) as computation:
            kpi_results(period=period_month(NOW.date(), zone=UTC))
        budget = OWN_QUERIES + len(computation)
        parse(scraper.get(URL))  # what each process keeps (the policy rows) is read once
        with django_assert_max_num_queries(budget) as first:
            parse(scraper.get(URL))
        for day in range(1, 6):
            incident_at(NOW - timedelta(days=day), severity=day % 4 + 1)
            IncidentFactory(severity=day % 4 + 1)
            enqueue(f"metrics:more:{day}")
        with django_assert_max_num_queries(budget) as second:
            parse(scraper.get(URL))
    # The computation above also read what each process keeps: at most its budget.
    assert len(first) == len(second) <= budget
