"""Elastic: Kibana alerting rules through the Webhook connector.

A rule's action posts the connector's body, a Mustache template the user pastes and Kibana
renders for each alert (escaping each value for a JSON string). Vigil's template
(:data:`TEMPLATE`, shown in the integration's snippet) mirrors Kibana's variable names::

    {"rule": {"id", "name", "url", "tags", "spaceId"},
     "alert": {"id", "uuid", "actionGroup", "actionGroupName", "flapping"},
     "context": {"title", "message", "reason", "conditions", "value", "link",
                 "alertDetailsUrl"},
     "date": "{{date}}", "kibanaBaseUrl": "{{kibanaBaseUrl}}", "severity": "error"}

How Vigil reads it:

* Identity: ``rule.id`` and ``alert.id`` (the rule's alert, e.g. the group a threshold rule
  found, one per host): one alert while Kibana keeps it active. Alerts of one rule are one
  group. The action must run "For each alert": a summary of alerts has no ``alert.id``.
* Status: ``alert.actionGroup`` ``recovered`` (an action set to run when the alert
  recovers) resolves the alert; any other group (``threshold met``, ``query matched``,
  ``metrics.threshold.fired``...) is firing.
* Severity: the ``severity`` the template sets: critical, error, warning or info (or 1–4),
  or Elastic Security's critical, high, medium and low (Sev 1–4). Each action of a rule has
  its own body, so a rule with several action groups can say per group ("critical" for its
  Alert group, "warning" for its Warning group). Without one, a rule tag
  ``severity:<word>``; without that, Vigil's alert rules and the integration's default.
* Impact start: ``date``, when the rule scheduled the action: with "On status changes" the
  rule run that found the alert active (at most one check interval after it began). A
  recovery ends at its ``date``.
* Title: a ``title`` the template sets, else the rule's name and the alert's id (the id
  alone says nothing for ``query matched`` and ``all documents``, Kibana's ids of ungrouped
  rules, and is left out). Labels: ``rule``, ``rule_id``, ``alert_id``, ``action_group``,
  ``space``, ``severity``, the rule's ``tags`` (comma-separated, or a JSON list from
  ``{{{rule.tags.asJSON}}}``) and each tag of the form ``name:value`` as a label. Annotations:
  ``description`` (``context.reason``, ``message`` or ``conditions``), ``url`` (the alert's
  details, ``context.link`` or the rule's page) and ``rule_url``; ``context.value`` as a
  number for Vigil's alert rules' thresholds.

The connector's Test tab posts the body as typed, Mustache tags and all: a body whose
``rule.id``, ``alert.id`` or ``alert.actionGroup`` is still a tag is refused (400) with the
reason, as is any other invalid body.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.utils import timezone

from ...models import AlertStatus, IntegrationKind
from ...models.detection import IntegrationAuth, default_auth
from ..parsing import (
    KEY_MAX,
    IncomingAlert,
    ParsedDelivery,
    PayloadError,
    _text,
    _title,
    clean,
    parse_number,
    parse_time,
    severity_word,
)
from . import register

# Kibana's template, as pasted into the connector's Body.
TEMPLATE = """{
  "rule": {
    "id": "{{rule.id}}",
    "name": "{{rule.name}}",
    "url": "{{rule.url}}",
    "tags": "{{rule.tags}}",
    "spaceId": "{{rule.spaceId}}"
  },
  "alert": {
    "id": "{{alert.id}}",
    "uuid": "{{alert.uuid}}",
    "actionGroup": "{{alert.actionGroup}}",
    "actionGroupName": "{{alert.actionGroupName}}",
    "flapping": "{{alert.flapping}}"
  },
  "context": {
    "title": "{{context.title}}",
    "message": "{{context.message}}",
    "reason": "{{context.reason}}",
    "conditions": "{{context.conditions}}",
    "value": "{{context.value}}",
    "link": "{{context.link}}",
    "alertDetailsUrl": "{{context.alertDetailsUrl}}"
  },
  "date": "{{date}}",
  "kibanaBaseUrl": "{{kibanaBaseUrl}}",
  "severity": "error"
}
"""
RECOVERED = "recovered"
# Elastic Security's rule severities, beside Vigil's own words.
ELASTIC_SEVERITY = {"critical": 1, "high": 2, "medium": 3, "low": 4}
# Kibana's alert ids of rules that do not group (Elasticsearch query, index threshold).
UNGROUPED_IDS = frozenset({"query matched", "all documents"})
_MUSTACHE = re.compile(r"\{\{\{?\s*[#^/&]?\s*[\w.@-]+\s*\}?\}\}")


def _level(value: str) -> int | None:
    return severity_word(value) or ELASTIC_SEVERITY.get(value.strip().lower())


def _object(payload: dict[str, Any], name: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    value = payload.get(name)
    if isinstance(value, dict):
        return value
    errors[name] = [f"Must be an object (the template's {name!r} part)."]
    return {}


def _tags(value: Any, errors: dict[str, list[str]]) -> list[str]:
    """``{{rule.tags}}`` renders as the tags joined with commas; ``{{{rule.tags.asJSON}}}``
    as a JSON list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [tag.strip() for tag in value.split(",") if tag.strip()]
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return [tag.strip() for tag in value if tag.strip()]
    errors["rule.tags"] = ["Give the rule's tags as {{rule.tags}} (text) or a list of strings."]
    return []


def _fingerprint(rule_id: str, alert_id: str) -> str:
    key = f"{rule_id}/{alert_id}"
    if len(key) <= KEY_MAX:
        return key
    return f"{rule_id[:100]}/{hashlib.sha256(key.encode()).hexdigest()}"


def _url(*candidates: str) -> str:
    for candidate in candidates:
        if re.match(r"^https?://", candidate):
            return candidate
    return ""


def parse_elastic(payload: Any) -> ParsedDelivery:
    """A Kibana rule action's body made from Vigil's template (module docstring). Raises
    :class:`PayloadError` when invalid or when its template variables were not rendered."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    rule = _object(payload, "rule", errors)
    alert = _object(payload, "alert", errors)
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    if errors:
        raise PayloadError(errors)
    identity = {
        "rule.id": rule.get("id"),
        "alert.id": alert.get("id"),
        "alert.actionGroup": alert.get("actionGroup"),
    }
    unrendered = [
        name
        for name, value in identity.items()
        if isinstance(value, str) and _MUSTACHE.search(value)
    ]
    if unrendered:
        raise PayloadError(
            {
                name: [
                    f"Arrived unrendered ({identity[name]}): Kibana fills the template's "
                    "variables in when a rule's action runs, not when the connector's Test "
                    "tab sends the body as typed. Test with values in their place, or from a "
                    "rule."
                ]
                for name in unrendered
            }
        )
    for name, value in identity.items():
        if not isinstance(value, str) or not value.strip():
            errors[name] = ["A non-blank string is required."]
    if "alert.id" in errors:
        errors["alert.id"].append(
            "Run the action For each alert: a summary of alerts has no alert.id."
        )
    tags = _tags(rule.get("tags"), errors)
    for name in ("name", "url", "spaceId"):
        if rule.get(name) is not None and not isinstance(rule[name], str):
            errors[f"rule.{name}"] = ["Must be a string."]
    severity = payload.get("severity")
    severity_text = str(severity) if isinstance(severity, int) else _text(severity)
    level = _level(severity_text) if severity_text else None
    if severity not in (None, "") and level is None:
        errors["severity"] = [
            "Give 1–4 or one of critical, error, warning, info (or Elastic Security's "
            "critical, high, medium, low)."
        ]
    title = payload.get("title")
    if title is not None and not isinstance(title, str):
        errors["title"] = ["Must be a string."]
    if errors:
        raise PayloadError(errors)

    rule_id, alert_id = clean(identity["rule.id"].strip()), clean(identity["alert.id"].strip())
    group = identity["alert.actionGroup"].strip()
    rule_name = _text(rule.get("name"))
    tag_labels: dict[str, str] = {}
    for tag in tags:
        name, sep, value = tag.partition(":")
        if sep and name.strip() and value.strip():
            tag_labels[name.strip()] = value.strip()
    if level is None and "severity" in tag_labels:
        level = _level(tag_labels["severity"])
    labels = {
        **tag_labels,
        "rule": rule_name,
        "rule_id": rule_id,
        "alert_id": alert_id,
        "action_group": group,
        "space": _text(rule.get("spaceId")),
        "tags": ",".join(tags),
        "severity": severity_text or tag_labels.get("severity", ""),
    }
    labels = clean({name: value for name, value in labels.items() if value})
    context_text = {name: _text(context.get(name)) for name in context}
    annotations = {
        "description": context_text.get("reason")
        or context_text.get("message")
        or context_text.get("conditions", ""),
        "url": _url(
            context_text.get("alertDetailsUrl", ""),
            context_text.get("link", ""),
            _text(rule.get("url")),
        ),
        "rule_url": _url(_text(rule.get("url"))),
    }
    annotations = clean({name: value for name, value in annotations.items() if value})
    number = parse_number(context.get("value"))
    now = timezone.now()
    moment = parse_time(payload.get("date"), now=now)
    status = AlertStatus.RESOLVED if group == RECOVERED else AlertStatus.FIRING
    shown_id = "" if alert_id.lower() in UNGROUPED_IDS or alert_id == rule_name else alert_id
    return ParsedDelivery(
        alerts=[
            IncomingAlert(
                fingerprint=_fingerprint(rule_id, alert_id),
                group_key=f"rule:{rule_id}"[:KEY_MAX],
                group_reason=f"same Kibana rule ({(rule_name or rule_id)[:120]})",
                status=status,
                action=status,
                title=_title(
                    title,
                    ": ".join(part for part in (rule_name, shown_id) if part),
                    context_text.get("title"),
                    f"Kibana rule {rule_id}",
                ),
                labels=labels,
                annotations=annotations,
                values={"value": number} if number is not None else {},
                starts_at=moment if status == AlertStatus.FIRING else None,
                ends_at=(moment or now) if status == AlertStatus.RESOLVED else None,
                sender_severity=level,
                raw=clean(payload),
            )
        ],
    )


def elastic_snippet(integration: Any, urls: dict[str, str]) -> str:
    scheme = integration.auth or default_auth(integration.kind, integration.secret)
    header = integration.auth_header or "X-Vigil-Token"
    if scheme == IntegrationAuth.BASIC:
        auth = f"Basic\n    Username:  vigil\n    Password:  {integration.secret}\n"
        headers = "Content-Type: application/json\n"
    elif scheme == IntegrationAuth.HEADER:
        auth = "None\n"
        headers = (
            f"Content-Type: application/json\n                   {header}: {integration.secret}\n"
        )
    else:
        auth = "None\n"
        headers = "Content-Type: application/json\n"
    return (
        "Kibana → Stack Management → Connectors → Create connector → Webhook\n"
        "  Method:          POST\n"
        f"  URL:             {urls['webhook_url']}\n"
        f"  Authentication:  {auth}"
        f"  HTTP headers:    {headers}"
        "Then in each alerting rule → Actions → Add action → that connector:\n"
        "  Action frequency: For each alert, On status changes.\n"
        "  Run when: the rule's action group (e.g. Threshold met), with the body below;\n"
        "  and a second action, Run when: Recovered, with the same body (it resolves the\n"
        "  alert in Vigil).\n"
        '  "severity": critical, error, warning or info (or 1–4; Elastic Security\'s\n'
        "  critical, high, medium, low): set it per action, e.g. critical for an Alert\n"
        "  group and warning for a Warning group. Without it a rule tag severity:<word>\n"
        "  counts, then Vigil's alert rules and this integration's default severity.\n"
        "The connector's Test tab sends the body as typed: Vigil refuses unrendered\n"
        "{{variables}} (400); test with values in their place.\n"
        "Body:\n" + TEMPLATE
    )


register(IntegrationKind.ELASTIC, parser=parse_elastic, snippet=elastic_snippet)
