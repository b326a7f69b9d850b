"""/metrics: Vigil in the Prometheus text exposition format, for Prometheus to scrape and Grafana
to chart (README, "The KPI API and the Prometheus exposition").

* **Off by default: 404.** With neither ``VIGIL_METRICS_TOKEN`` nor ``VIGIL_METRICS_ALLOW`` set
  the page does not exist, as ``/anymail/<esp>/inbound/`` does not without its provider: it is a
  feature an operator turns on, not a resource someone could be let into, so nothing (not even
  a 403) tells a scanner it is there.
* **Allowlist: 403.** With ``VIGIL_METRICS_ALLOW`` set, the client's address (REMOTE_ADDR, or
  ``DJANGO_NUM_PROXIES`` hops back in X-Forwarded-For, the rule of the rate limits and the
  login lockout) must be in one of its addresses or networks.
* **Token: 401.** With ``VIGIL_METRICS_TOKEN`` set, ``Authorization: Bearer <token>`` must carry
  it (compared in constant time), else a 401 with ``WWW-Authenticate: Bearer``. With both
  settings a scrape needs both, the address checked first.

Everything is read when Prometheus scrapes (a custom collector over a registry made for the
request, so nothing is kept between scrapes and each process answers alike), in a fixed number
of queries: a handful for the incidents, the outbox and the events, and the KPI computation's
for the current month (a few per active KPI definition). A part that fails is left out and
``vigil_scrape_collector_success{collector=...}`` says so, so a broken KPI cannot blind the
alerts on the outbox or the sweeps.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from escalation.outbox import outbox_backlog, sweep_ages
from incidents.models import ACTIVE_STATUSES, Incident, SeverityLevel
from incidents.selectors import events_backlog
from incidents.services.security import client_address

from .selectors import kpi_results, period_month
from .services.periods import policy_zone

logger = logging.getLogger(__name__)

# A KPI's figures in Prometheus base units: times in seconds (the computation gives minutes),
# first-contact resolution as a ratio (it gives percent), satisfaction as the score out of 5.
KPI_UNITS: dict[str, tuple[str, float]] = {
    "minutes": ("seconds", 60.0),
    "percent": ("ratio", 0.01),
    "score": ("score", 1.0),
}
STATISTICS = ("mean", "median", "p90")


class VigilCollector:
    """Reads Vigil's state at collect() time, as of ``now``."""

    def __init__(self, *, now: datetime) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "vigil_scrape_collector_success",
            "1 when this part of the exposition was read, 0 when reading it failed (logged).",
            labels=["collector"],
        )
        parts: list[tuple[str, Callable[[], Iterable[Metric]]]] = [
            ("incidents", self.incidents),
            ("outbox", self.outbox),
            ("events", self.events),
            ("sweeps", self.sweeps),
            ("kpis", self.kpis),
        ]
        for name, part in parts:
            try:
                families = list(part())
            except Exception:
                logger.exception("/metrics could not read its %s part", name)
                success.add_metric([name], 0)
                continue
            success.add_metric([name], 1)
            yield from families
        yield success

    def incidents(self) -> Iterator[Metric]:
        levels = list(
            SeverityLevel.objects.annotate(
                active=Count("incidents", filter=Q(incidents__status__in=ACTIVE_STATUSES))
            )
            .order_by("level")
            .values_list("level", "active")
        )
        active = GaugeMetricFamily(
            "vigil_incidents_active",
            "Active incidents (not resolved, closed or cancelled), by severity level.",
            labels=["severity"],
        )
        for level, count in levels:
            active.add_metric([str(level)], count)
        yield active

        breached = GaugeMetricFamily(
            "vigil_sla_breached_active",
            "Active incidents past their SLA target now (response: acknowledgement; "
            "resolution), by target and severity level.",
            labels=["target", "severity"],
        )
        running = Incident.objects.active()
        for target, rows in (
            ("response", running.response_breached(self.now)),
            ("resolution", running.resolution_breached(self.now)),
        ):
            counts = dict(
                rows.order_by()
                .values("severity")
                .annotate(n=Count("pk"))
                .values_list("severity", "n")
            )
            for level, _ in levels:
                breached.add_metric([target, str(level)], counts.get(level, 0))
        yield breached

    def outbox(self) -> Iterator[Metric]:
        backlog = outbox_backlog(now=self.now)
        states = GaugeMetricFamily(
            "vigil_outbox_backlog",
            "Notifications not delivered: pending (waiting, or waiting to be retried), sending "
            "(claimed by a worker), failed (gave up, until an operator retries them).",
            labels=["state"],
        )
        states.add_metric(["pending"], backlog.pending)
        states.add_metric(["sending"], backlog.sending)
        states.add_metric(["failed"], backlog.failed)
        yield states
        yield GaugeMetricFamily(
            "vigil_outbox_failed_last_24h",
            "Notifications that failed in the last 24 hours and were not retried since.",
            value=backlog.failed_last_24h,
        )
        yield GaugeMetricFamily(
            "vigil_outbox_oldest_pending_age_seconds",
            "Age of the oldest notification pending or sending (0 when there is none).",
            value=backlog.oldest_pending_age_seconds or 0.0,
        )

    def events(self) -> Iterator[Metric]:
        backlog = events_backlog(now=self.now)
        yield GaugeMetricFamily(
            "vigil_events_backlog",
            "Incident events whose handlers (escalation, communications, reviews, KPIs) have "
            "not all run yet.",
            value=backlog["unfinished"],
        )
        yield GaugeMetricFamily(
            "vigil_events_oldest_due_age_seconds",
            "How long the oldest incident event that is due (not waiting for a retry) has "
            "waited for its handlers (0 when none); /healthz fails past "
            "VIGIL_HEALTH_SWEEP_MAX_AGE_SECONDS.",
            value=backlog["oldest_due_seconds"],
        )

    def sweeps(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "vigil_sweep_lag_seconds",
            "Seconds since the sweep last ran (its heartbeat), for the sweeps /healthz watches; "
            "absent when it never ran or the cache cannot be read. /healthz fails past "
            "VIGIL_HEALTH_SWEEP_MAX_AGE_SECONDS.",
            labels=["sweep"],
        )
        for name, age in sweep_ages(now=self.now).items():
            if age is not None:
                lag.add_metric([name.removesuffix("_sweep")], age)
        yield lag

    def kpis(self) -> Iterator[Metric]:
        zone = policy_zone()
        period = period_month(self.now.astimezone(zone).date(), zone=zone)
        labels = ["kpi", "unit"]
        value = GaugeMetricFamily(
            "vigil_kpi_value",
            f"Each active KPI over the current month ({period.label} in the KPI policy's time "
            "zone) by statistic, in the unit named by its label: seconds for times, a ratio "
            "for first-contact resolution, the score out of 5 for satisfaction. Absent "
            "without a sample.",
            labels=[*labels, "statistic"],
        )
        target = GaugeMetricFamily(
            "vigil_kpi_target",
            "Each active KPI's target, for the statistic judged, in the KPI's unit.",
            labels=[*labels, "statistic"],
        )
        met = GaugeMetricFamily(
            "vigil_kpi_met",
            "1 when the KPI's judged statistic meets its target this month, 0 when it misses "
            "it; absent without a sample.",
            labels=[*labels, "statistic"],
        )
        sample = GaugeMetricFamily(
            "vigil_kpi_sample_size",
            "Incidents (or ratings, for satisfaction) measured for the KPI this month.",
            labels=labels,
        )
        unmeasurable = GaugeMetricFamily(
            "vigil_kpi_unmeasurable",
            "Incidents of the month the KPI could not measure (e.g. no impact-start time for "
            "the time to detect, not yet acknowledged or resolved).",
            labels=labels,
        )
        for result in kpi_results(period=period):
            definition = result.definition
            unit, scale = KPI_UNITS[definition.unit]
            base = [definition.slug, unit]
            for statistic in STATISTICS:
                figure = getattr(result, statistic)
                if figure is not None:
                    value.add_metric([*base, statistic], float(figure) * scale)
            judged = [*base, definition.statistic]
            target.add_metric(judged, result.target * scale)
            if result.met is not None:
                met.add_metric(judged, 1 if result.met else 0)
            sample.add_metric(base, result.sample)
            unmeasurable.add_metric(base, result.unmeasurable)
        yield from (value, target, met, sample, unmeasurable)


def _address_allowed(request: HttpRequest, allow: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(client_address(request) or "")
    except ValueError:
        return False
    # A dual-stack listener shows an IPv4 client as ::ffff:a.b.c.d; the allowlist names it as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(item, strict=False) for item in allow)


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _token_matches(given: str, expected: str) -> bool:
    # Digests of equal length, so the comparison's time tells nothing, not even the length.
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _refusal(status: int, detail: str) -> HttpResponse:
    return HttpResponse(detail + "\n", status=status, content_type="text/plain; charset=utf-8")


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.VIGIL_METRICS_TOKEN
    allow = settings.VIGIL_METRICS_ALLOW
    if not token and not allow:
        raise Http404("The metrics exposition is not enabled.")
    if allow and not _address_allowed(request, allow):
        return _refusal(403, "This address may not read the metrics.")
    if token:
        given = _bearer(request)
        if given is None or not _token_matches(given, token):
            response = _refusal(401, "A valid bearer token is required.")
            challenge = 'Bearer realm="vigil-metrics"'
            if given is not None:
                challenge += ', error="invalid_token"'
            response["WWW-Authenticate"] = challenge
            return response
    registry = CollectorRegistry()
    registry.register(VigilCollector(now=timezone.now()))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
