"""The alert rules of §7.2: which severity and action an incoming alert gets.

Severity words of the procedure map to levels by the severity table's names (§2.1):
Critical → Sev 1, High → Sev 2, Medium → Sev 3, Low → Sev 4 (a rule stores the level).

Order of precedence for an alert's severity:

1. the first enabled rule (by position) that matches it (see :class:`AlertRule`);
2. the severity the sender gave: PagerDuty's ``payload.severity``, an Alertmanager or Grafana
   alert's ``severity`` label, the generic hook's ``severity`` — critical → 1, error → 2,
   warning → 3, info → 4 (or a level number);
3. the default severity of the routing rule that routed the alert (:mod:`.routing`), else the
   integration's default severity.

What an action does when the alert opens an incident (``paging`` of ``incident_create``, and
the urgency that, with impact Medium, gives the priority through the §2.2 matrix; the core
holds these tables, ``ALERT_ACTION_PAGING`` and ``ALERT_ACTION_URGENCY`` in its models):

====================  =========  ===========================================================
action                urgency    paging
====================  =========  ===========================================================
page on-call          Medium     the response team (initial notification, §4.2 step 1)
escalate immediately  High       the team, and the escalation matrix's first step at once
monitor/investigate   Low        nobody (the incident is logged for investigation)
immediate attention   High       the response team
security team alert   High       the team and the security team contact
(no rule)             Medium     the response team
====================  =========  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models import AlertAction, AlertRule, Integration, Level
from ..models.detection import ALERT_ACTION_PAGING, ALERT_ACTION_URGENCY
from .parsing import IncomingAlert, parse_number
from .state import DETECTION_CONFIG

if TYPE_CHECKING:
    from .routing import Route


@dataclass(frozen=True)
class Classification:
    severity: int
    action: str
    rule: AlertRule | None
    value: float | None
    why: str

    @property
    def paging(self) -> str:
        return ALERT_ACTION_PAGING.get(self.action, "team")

    @property
    def urgency(self) -> str:
        return ALERT_ACTION_URGENCY.get(self.action, Level.MEDIUM)


def rules_active() -> list[AlertRule]:
    """The enabled alert rules in the order they are tried (one query, none while they are
    unchanged). Not to be changed by the caller."""
    return DETECTION_CONFIG.get(
        "rules", lambda: list(AlertRule.objects.filter(enabled=True).order_by("position", "id"))
    )


def alert_value(alert: IncomingAlert, keys: list[str]) -> float | None:
    """The alert's value under the first of ``keys`` found in Grafana's values, the labels or
    the annotations."""
    for key in keys:
        for source in (alert.values, alert.labels, alert.annotations):
            if key in source:
                number = parse_number(source[key])
                if number is not None:
                    return number
    return None


def rule_matches(rule: AlertRule, alert: IncomingAlert) -> tuple[bool, float | None]:
    metric = alert.labels.get("metric", "").strip().lower()
    named = alert.labels.get(rule.match_label, "").strip().lower()
    wanted = {str(v).strip().lower() for v in rule.match_values or []}
    if metric != rule.key and not (named and named in wanted):
        return False, None
    value = alert_value(alert, list(rule.value_keys or []))
    if rule.threshold is not None and value is not None and value < float(rule.threshold):
        return False, value
    return True, value


def alert_classify(
    *,
    alert: IncomingAlert,
    integration: Integration,
    rules: list[AlertRule],
    route: Route | None = None,
) -> Classification:
    """Severity and action for ``alert`` (precedence in the module docstring); ``route``, the
    alert's route, gives the default severity when a routing rule routed it."""
    for rule in rules:
        matched, value = rule_matches(rule, alert)
        if matched:
            shown = "" if value is None else f", value {value:g}{rule.unit and ' ' + rule.unit}"
            return Classification(
                severity=rule.severity_id,
                action=rule.action,
                rule=rule,
                value=value,
                why=f"alert rule {rule.name}{shown}: {AlertAction(rule.action).label.lower()}",
            )
    if alert.sender_severity is not None:
        return Classification(
            severity=alert.sender_severity,
            action="",
            rule=None,
            value=None,
            why="no alert rule matched; severity given by the sender",
        )
    if route is not None and route.rule is not None and route.rule.severity_id:
        return Classification(
            severity=route.severity,
            action="",
            rule=None,
            value=None,
            why=f"no alert rule matched; routing rule #{route.rule.pk}'s default severity",
        )
    return Classification(
        severity=integration.default_severity_id,
        action="",
        rule=None,
        value=None,
        why="no alert rule matched; the integration's default severity",
    )
