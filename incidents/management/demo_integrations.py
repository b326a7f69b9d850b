"""Demo integrations: the monitoring systems of the demo company, each with its own URL key and
secret, a heartbeat on the nightly database backup, a routing rule
and a planned maintenance window, all written through the detection services by the demo admin.

Idempotent: an integration is matched by its name, the routing rule by its integration and
labels, the window by its reason; what exists is left as it is, so a second load writes
nothing. A heartbeat's signal is recorded only when this load creates its integration (the
demo starts healthy; a database loaded days ago shows the silence, as Vigil would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from incidents.detection.heartbeat import integration_signal
from incidents.detection.integrations import integration_create
from incidents.detection.maintenance import maintenance_window_create, window_describe
from incidents.detection.routing import match_text, routing_rule_create
from incidents.models import (
    Integration,
    IntegrationAuth,
    IntegrationKind,
    MaintenanceWindow,
    RoutingRule,
    Service,
    Source,
)


@dataclass(frozen=True)
class DemoIntegration:
    name: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    # Record a heartbeat signal when the integration is created (it has heartbeat_minutes).
    signal: bool = False


PROMETHEUS = "Prometheus (production)"
INTEGRATIONS = [
    DemoIntegration(
        PROMETHEUS,
        IntegrationKind.ALERTMANAGER,
        # No heartbeat: nothing sends the demo a Watchdog, and a "no signal" incident ten
        # minutes into every demo session would only surprise.
        {"service": "web-app", "auto_resolve": True},
    ),
    DemoIntegration("Grafana Cloud", IntegrationKind.GRAFANA, {"service": "web-app"}),
    DemoIntegration(
        "Datadog",
        IntegrationKind.DATADOG,
        {"service": "auth", "auth": IntegrationAuth.HEADER, "auth_header": "X-Vigil-Token"},
    ),
    DemoIntegration(
        "CloudWatch eu-west-1",
        IntegrationKind.CLOUDWATCH,
        {"service": "orders-db", "auth": IntegrationAuth.SNS},
    ),
    DemoIntegration(
        "Nagios core",
        IntegrationKind.NAGIOS,
        {"service": "reporting", "auth": IntegrationAuth.HMAC},
    ),
    DemoIntegration(
        "Splunk security searches",
        IntegrationKind.SPLUNK,
        {"service": "auth", "auth": IntegrationAuth.URL_KEY, "default_severity": 2},
    ),
    DemoIntegration(
        "Nightly database backup",
        IntegrationKind.HEARTBEAT,
        # 25 hours: a nightly job, with an hour's grace for a slow night.
        {"service": "orders-db", "heartbeat_minutes": 25 * 60, "heartbeat_severity": 3},
        signal=True,
    ),
]
# Prometheus alerts of the payments team are about checkout (the first of these that exists).
ROUTING_MATCH = {"team": "payments"}
ROUTING_SERVICES = ("checkout", "payments")
# The database failover rehearsal, tomorrow 02:00-03:00 (Vigil's time zone), on the database.
WINDOW_REASON = "Database failover test"
WINDOW_SERVICES = ("orders-db",)


@dataclass
class IntegrationsResult:
    integrations: list[tuple[Integration, bool]] = field(default_factory=list)
    routing_rule: RoutingRule | None = None
    window: MaintenanceWindow | None = None

    @property
    def notes(self) -> list[str]:
        """The routing rule and the window, one line each, for the command's report."""
        lines = []
        rule = self.routing_rule
        if rule is not None:
            lines.append(
                f"Routing rule on {rule.integration}: {match_text(rule.match)} → {rule.service}"
            )
        if self.window is not None:
            lines.append(
                f"Maintenance window on {self.window.service}: {window_describe(self.window)}"
            )
        return lines


def _first_service(slugs: tuple[str, ...]) -> Service | None:
    found = {s.slug: s for s in Service.objects.filter(slug__in=slugs, is_active=True)}
    return next((found[slug] for slug in slugs if slug in found), None)


def load_integrations(*, actor: Any, now: datetime | None = None) -> IntegrationsResult:
    """Create what of the demo integrations is missing (see the module docstring), as
    ``actor`` (the demo admin) from the admin. Needs the demo's services (``demo.load`` makes
    them first). One transaction; not run in a story's travelled time, so the keys, secrets
    and signals are of now."""
    now = now or timezone.now()
    result = IntegrationsResult()
    with transaction.atomic():
        existing = {i.name: i for i in Integration.objects.filter(name__in=_names())}
        for demo in INTEGRATIONS:
            integration = existing.get(demo.name)
            created = integration is None
            if created:
                integration = integration_create(
                    actor=actor,
                    source=Source.ADMIN,
                    name=demo.name,
                    kind=demo.kind,
                    **demo.fields,
                )
                if demo.signal:
                    integration_signal(integration_id=integration.pk, at=now)
            result.integrations.append((integration, created))
        prometheus = next(i for i, _ in result.integrations if i.name == PROMETHEUS)
        result.routing_rule = _routing_rule(prometheus, actor=actor)
        result.window = _window(actor=actor, now=now)
    return result


def _names() -> list[str]:
    return [demo.name for demo in INTEGRATIONS]


def _routing_rule(integration: Integration, *, actor: Any) -> RoutingRule | None:
    rule = RoutingRule.objects.filter(integration=integration, match=ROUTING_MATCH).first()
    if rule is not None:
        return rule
    service = _first_service(ROUTING_SERVICES)
    if service is None:
        return None
    return routing_rule_create(
        integration=integration,
        actor=actor,
        source=Source.ADMIN,
        match=ROUTING_MATCH,
        service=service,
    )


def _window(*, actor: Any, now: datetime) -> MaintenanceWindow | None:
    window = MaintenanceWindow.objects.filter(reason=WINDOW_REASON).first()
    if window is not None:
        return window
    service = _first_service(WINDOW_SERVICES)
    if service is None:
        return None
    tomorrow = timezone.localtime(now).date() + timedelta(days=1)
    starts_at = timezone.make_aware(datetime.combine(tomorrow, time(2)))
    return maintenance_window_create(
        actor=actor,
        source=Source.ADMIN,
        now=now,
        reason=WINDOW_REASON,
        service=service,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1),
    )
