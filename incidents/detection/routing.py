"""Routing rules: which service an integration's alert is about, and its default severity.

Each integration may have routing rules (:class:`RoutingRule`). For every incoming alert the
first enabled rule of its integration, by position then id, whose every ``match`` label has
one of the rule's values (compared case-insensitively, surrounding spaces ignored; a label
the alert lacks is no match) routes it:

- its ``service`` is the service an incident opened from the alert affects, and the service
  whose maintenance windows silence it (none: the integration's service);
- its ``severity`` replaces the integration's default severity in the §7.2 precedence
  (:mod:`.rules`): an alert rule that matches, then the sender's severity, still come first.

No rule matches: the integration's service and default severity, as without routing. The
rules of an integration are read once per delivery (:func:`routing_rules_for`).

Rules are written through :func:`routing_rule_create`, :func:`routing_rule_update` and
:func:`routing_rule_delete` (the admin's inline on the integration page and the API both call
them); they need ``incidents.change_integration``, like the integration itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from ..errors import InvalidInput
from ..models import Integration, RoutingRule, Service, SeverityLevel
from ..services.catalog import policy_row_update, require_policy_perm, validated_save
from ..services.common import audited_delete
from .parsing import IncomingAlert
from .state import DETECTION_CONFIG

ROUTING_RULE_FIELDS = ("position", "match", "service", "severity", "enabled")
MATCH_LABELS_MAX = 20
MATCH_VALUES_MAX = 50
LABEL_MAX = 100
VALUE_MAX = 255
MATCH_EXAMPLE = '{"team": "payments", "env": ["prod", "production"]}'


# --- validation -------------------------------------------------------------------------------


def routing_match_errors(value: object) -> list[str]:
    """Why ``value`` cannot be a routing rule's ``match`` (empty when it can): a non-empty
    object of label name -> a non-empty string or a non-empty list of non-empty strings."""
    if not isinstance(value, dict) or not value:
        return [f"Give an object of labels and the values they must have, e.g. {MATCH_EXAMPLE}."]
    if len(value) > MATCH_LABELS_MAX:
        return [f"At most {MATCH_LABELS_MAX} labels."]
    errors = []
    for label, wanted in value.items():
        if not isinstance(label, str) or not label.strip() or len(label) > LABEL_MAX:
            errors.append(f"Label names are non-empty strings of at most {LABEL_MAX} characters.")
            continue
        values = wanted if isinstance(wanted, list) else [wanted]
        if (
            not values
            or len(values) > MATCH_VALUES_MAX
            or not all(isinstance(v, str) and v.strip() and len(v) <= VALUE_MAX for v in values)
        ):
            errors.append(
                f"{label}: give a non-empty string or a list of 1 to {MATCH_VALUES_MAX} "
                f"non-empty strings (at most {VALUE_MAX} characters each)."
            )
    return errors


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    fields = dict(fields)
    if "match" in fields:
        errors = routing_match_errors(fields["match"])
        if errors:
            raise InvalidInput({"match": " ".join(errors)})
    if fields.get("service") is not None and not isinstance(fields["service"], Service):
        service = Service.objects.filter(slug=fields["service"]).first()
        if service is None:
            raise InvalidInput({"service": f"Unknown service {fields['service']!r}."})
        fields["service"] = service
    if fields.get("severity") is not None and not isinstance(fields["severity"], SeverityLevel):
        level = SeverityLevel.objects.filter(level=fields["severity"]).first()
        if level is None:
            raise InvalidInput({"severity": f"Unknown severity {fields['severity']!r}."})
        fields["severity"] = level
    return fields


def _unknown(fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - set(ROUTING_RULE_FIELDS))
    if unknown:
        raise InvalidInput({name: "Unknown field." for name in unknown})


# --- services ---------------------------------------------------------------------------------


@transaction.atomic
def routing_rule_create(
    *, integration: Integration, actor: Any, source: str, **fields: Any
) -> RoutingRule:
    """Add a routing rule to ``integration`` (``match`` required; ``service`` and ``severity``
    by instance, slug or level). Needs ``incidents.change_integration``. Applies to deliveries
    processed afterwards. Not idempotent."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    _unknown(fields)
    if "match" not in fields:
        raise InvalidInput({"match": "This field is required."})
    rule = RoutingRule(integration=integration, **_validated(fields))
    validated_save(rule, actor=actor, reason=f"created via {source}")
    return rule


@transaction.atomic
def routing_rule_update(
    *, rule: RoutingRule, actor: Any, source: str, **changes: Any
) -> RoutingRule:
    """Change a routing rule (not its integration). Needs ``incidents.change_integration``.
    Alerts already processed keep their incidents. Idempotent: no change, no write."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    _unknown(changes)
    return policy_row_update(rule, actor=actor, source=source, changes=_validated(changes))


@transaction.atomic
def routing_rule_delete(*, rule: RoutingRule, actor: Any, source: str) -> None:
    """Delete a routing rule; its integration's alerts route by the remaining rules. Needs
    ``incidents.change_integration``."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    locked = RoutingRule.objects.select_for_update().get(pk=rule.pk)
    audited_delete(locked, actor=actor, reason=f"deleted via {source}")


# --- selectors --------------------------------------------------------------------------------


def routing_rules_for(*, integration: Integration) -> list[RoutingRule]:
    """The integration's enabled rules in the order they are tried (one query, none while
    the rules and services are unchanged). Not to be changed by the caller."""
    return DETECTION_CONFIG.get(
        f"routing:{integration.pk}",
        lambda: list(
            RoutingRule.objects.filter(integration=integration, enabled=True)
            .select_related("service")
            .order_by("position", "id")
        ),
    )


def routing_rules_list(*, integration: Integration):
    """All of the integration's rules, enabled or not, in the order they are tried."""
    return (
        RoutingRule.objects.filter(integration=integration)
        .select_related("service")
        .order_by("position", "id")
    )


# --- routing an alert -------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Where an alert goes: the rule that routed it (None: the integration's own settings),
    its service and its default severity."""

    rule: RoutingRule | None
    service: Service | None
    severity: int

    @property
    def service_id(self) -> int | None:
        return self.service.pk if self.service is not None else None


def _norm(value: object) -> str:
    return str(value).strip().lower()


def rule_matches(rule: RoutingRule, labels: dict[str, Any]) -> bool:
    """Every label of the rule's ``match`` is among the alert's labels with one of its values."""
    if not rule.match:
        return False
    for label, wanted in rule.match.items():
        if label not in labels:
            return False
        values = wanted if isinstance(wanted, list) else [wanted]
        if _norm(labels[label]) not in {_norm(v) for v in values}:
            return False
    return True


def route_alert(
    *, alert: IncomingAlert, integration: Integration, rules: list[RoutingRule]
) -> Route:
    """The route of ``alert`` by the integration's enabled ``rules`` (in their order)."""
    for rule in rules:
        if rule.enabled and rule_matches(rule, alert.labels):
            return Route(
                rule=rule,
                service=rule.service if rule.service_id else integration.service,
                severity=rule.severity_id or integration.default_severity_id,
            )
    return Route(rule=None, service=integration.service, severity=integration.default_severity_id)


def match_text(match: dict[str, Any]) -> str:
    """``env in (prod, production), team=payments``: labels in name order (PostgreSQL's jsonb
    keeps no key order, so the text would differ by database otherwise)."""
    parts = []
    for label, wanted in sorted((match or {}).items()):
        if isinstance(wanted, list):
            parts.append(f"{label} in ({', '.join(str(v) for v in wanted)})")
        else:
            parts.append(f"{label}={wanted}")
    return ", ".join(parts)


def route_describe(route: Route, integration: Integration) -> str:
    """For the timeline: which rule routed the alert, and where to."""
    rule = route.rule
    if rule is None:
        return ""
    service = route.service.name if route.service is not None else "no service"
    severity = (
        f"default severity Sev {rule.severity_id}"
        if rule.severity_id
        else f"the integration's default severity (Sev {integration.default_severity_id})"
    )
    return (
        f"Routed by routing rule #{rule.pk} of {integration.name} (position {rule.position}, "
        f"{match_text(rule.match)}): service {service}, {severity}."
    )
