"""Datadog's Webhooks integration: a monitor that mentions ``@webhook-<name>`` posts the
webhook's Payload with Datadog's ``$VARIABLES`` filled in (Datadog's documentation, Integrations
→ Webhooks → Variables).

Vigil's payload (the snippet) keeps the keys of Datadog's default payload and adds one key per
monitor variable, named after it in lower case:

=================  ===================  ====================================================
key                variable             read as
=================  ===================  ====================================================
alert_id           $ALERT_ID            the monitor; with the scope, the alert's identity
alert_scope        $ALERT_SCOPE         the group of a multi-alert monitor (``host:web-1``):
                                        each group fires and recovers on its own
alert_transition   $ALERT_TRANSITION    Triggered, Re-Triggered, Warn, Re-Warn, No Data,
                                        Re-No Data, Renotify: firing; Recovered: resolved
aggreg_key         $AGGREG_KEY          the group key: one incident per aggregation key
alert_priority     $ALERT_PRIORITY      P1 → Sev 1, P2 → Sev 2, P3 → Sev 3, P4 and P5 → Sev 4
alert_title        $ALERT_TITLE         the title, its ``[Triggered on {…}]`` prefix removed
date               $DATE                epoch milliseconds: the start (firing) or end
                                        (resolved) of the alert
hostname, tags     $HOSTNAME, $TAGS     labels: ``host``, and each ``key:value`` tag
link, snapshot     $LINK, $SNAPSHOT     annotations ``url`` and ``snapshot_url``
=================  ===================  ====================================================

plus ``alert_status``, ``alert_query``, ``alert_metric``, ``alert_type``, ``alert_cycle_key``
and Datadog's default ``body`` (``$EVENT_MSG``), ``title``, ``id``, ``event_type``,
``last_updated`` and ``org``. A variable Datadog left unfilled (``"$ALERT_PRIORITY"``) counts as
missing.

Datadog's default payload is read too, less precisely: the transition, priority and scope come
from the event title (``[P1] [Triggered on {host:web-1}] Disk full``) and the monitor from the
monitor link in the body.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from django.utils import timezone

from ...models import AlertStatus, IntegrationKind
from ..integrations import integration_credential_headers
from ..parsing import IncomingAlert, ParsedDelivery, PayloadError, _title, clean
from . import register
from ._shared import bounded_key, epoch_time, tag_pairs

FIRING = ("Triggered", "Re-Triggered", "Warn", "Re-Warn", "No Data", "Re-No Data", "Renotify")
RESOLVED = ("Recovered",)
TRANSITIONS = {t.lower(): t for t in FIRING + RESOLVED}
PRIORITY = {"P1": 1, "P2": 2, "P3": 3, "P4": 4, "P5": 4}
STRING_FIELDS = (
    "alert_id",
    "alert_scope",
    "alert_transition",
    "aggreg_key",
    "alert_priority",
    "alert_title",
    "alert_status",
    "alert_query",
    "alert_metric",
    "alert_type",
    "alert_cycle_key",
    "hostname",
    "tags",
    "link",
    "snapshot",
    "body",
    "title",
    "id",
    "event_type",
    "date",
    "last_updated",
)
# A variable Datadog did not fill in stays as written.
_UNFILLED = re.compile(r"^\$[A-Z][A-Z0-9_]*(?:\[[^\]]*\])?$")
# "[P1] [Triggered on {host:web-1,env:prod}] Disk full": priority, transition, scope, name.
_TITLE = re.compile(
    r"^\s*(?:\[(?P<priority>P[1-5])\]\s*)?"
    r"\[(?P<transition>Re-Triggered|Triggered|Recovered|Re-Warn|Warn|Re-No Data|No Data|Renotify)"
    r"(?: on \{(?P<scope>[^}]*)\})?\]\s*(?P<name>.*)$",
    re.DOTALL | re.IGNORECASE,
)
_MONITOR_LINK = re.compile(r"/monitors/(\d+)")

PAYLOAD = """{
  "body": "$EVENT_MSG",
  "last_updated": "$LAST_UPDATED",
  "event_type": "$EVENT_TYPE",
  "title": "$EVENT_TITLE",
  "date": "$DATE",
  "org": {"id": "$ORG_ID", "name": "$ORG_NAME"},
  "id": "$ID",
  "alert_id": "$ALERT_ID",
  "alert_scope": "$ALERT_SCOPE",
  "alert_transition": "$ALERT_TRANSITION",
  "aggreg_key": "$AGGREG_KEY",
  "alert_cycle_key": "$ALERT_CYCLE_KEY",
  "alert_priority": "$ALERT_PRIORITY",
  "alert_title": "$ALERT_TITLE",
  "alert_status": "$ALERT_STATUS",
  "alert_query": "$ALERT_QUERY",
  "alert_metric": "$ALERT_METRIC",
  "alert_type": "$ALERT_TYPE",
  "hostname": "$HOSTNAME",
  "tags": "$TAGS",
  "link": "$LINK",
  "snapshot": "$SNAPSHOT"
}"""


def _fields(payload: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name in STRING_FIELDS:
        value = payload.get(name)
        if value is None or isinstance(value, bool):
            text = ""
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            text = str(int(value)) if value.is_integer() else str(value)
        elif isinstance(value, str):
            text = value.strip()
        else:
            errors[name] = ["Must be a string."]
            continue
        fields[name] = "" if _UNFILLED.match(text) else text
    return fields


def _scope(text: str) -> str:
    """The scope's tags in a stable order (Datadog lists them as the group-by says)."""
    return ",".join(sorted(f"{k}:{v}" if v else k for k, v in tag_pairs(text)))


def parse_datadog(payload: Any) -> ParsedDelivery:
    """A Datadog webhook body (Vigil's payload or Datadog's default): one alert, firing or
    resolved by its transition. Raises :class:`PayloadError`."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    payload = clean(payload)
    errors: dict[str, list[str]] = {}
    f = _fields(payload, errors)
    org = payload.get("org")
    if org is not None and not isinstance(org, dict):
        errors["org"] = ["Must be an object."]
    if errors:
        raise PayloadError(errors)

    parsed_title = _TITLE.match(f["alert_title"] or f["title"])
    from_title = parsed_title.groupdict() if parsed_title else {}
    transition_text = f["alert_transition"] or from_title.get("transition") or ""
    transition = TRANSITIONS.get(" ".join(transition_text.split()).lower())
    if transition is None:
        errors["alert_transition"] = [
            (f"Unknown transition {transition_text!r}. " if transition_text else "Missing. ")
            + f"Datadog's are: {', '.join(FIRING + RESOLVED)}. Use Vigil's payload (the "
            "integration's snippet), which sends $ALERT_TRANSITION."
        ]
    monitor = f["alert_id"]
    if not monitor:
        link = _MONITOR_LINK.search(f["body"]) or _MONITOR_LINK.search(f["link"])
        monitor = link.group(1) if link else ""
    scope = _scope(f["alert_scope"] or from_title.get("scope") or "")
    name = " ".join((from_title.get("name") or f["alert_title"] or f["title"]).split())
    if not monitor and not name:
        errors["alert_id"] = ["Missing: give $ALERT_ID (Vigil's payload) or a title."]
    if errors:
        raise PayloadError(errors)

    if monitor:
        fingerprint = bounded_key(monitor, scope)
    else:
        digest = hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:32]
        fingerprint = bounded_key(f"title-{digest}", scope)
    if f["aggreg_key"]:
        group_key = f"datadog:{f['aggreg_key']}"
        reason = f"same Datadog aggregation key ({f['aggreg_key'][:120]})"
    elif monitor:
        group_key = f"datadog:monitor:{monitor}"
        reason = f"same Datadog monitor ({monitor})"
    else:
        group_key = fingerprint
        reason = f"same Datadog alert ({fingerprint[:120]})"

    priority = (f["alert_priority"] or from_title.get("priority") or "").upper()
    labels: dict[str, str] = {}
    for key, value in (
        ("monitor_id", monitor),
        ("alertname", name),
        ("host", f["hostname"]),
        ("priority", priority),
        ("scope", scope),
        ("alert_type", f["alert_type"]),
        ("event_type", f["event_type"]),
        ("org", org.get("name", "") if isinstance(org, dict) else ""),
    ):
        if isinstance(value, str) and value and not _UNFILLED.match(value):
            labels[key] = value
    for tag_name, tag_value in tag_pairs(f["alert_scope"]) + tag_pairs(f["tags"]):
        if tag_name and tag_value:
            labels.setdefault(tag_name, tag_value)
    if f["tags"]:
        labels["tags"] = ",".join(f"{k}:{v}" if v else k for k, v in tag_pairs(f["tags"]))
    annotations = {
        key: value
        for key, value in (
            ("description", f["body"] or f["alert_status"]),
            ("url", f["link"]),
            ("snapshot_url", f["snapshot"]),
            ("status", f["alert_status"]),
            ("query", f["alert_query"]),
            ("metric", f["alert_metric"]),
            ("transition", transition),
            ("event_id", f["id"]),
            ("alert_cycle_key", f["alert_cycle_key"]),
        )
        if value
    }

    now = timezone.now()
    when = epoch_time(f["date"] or f["last_updated"], now=now)
    status = AlertStatus.RESOLVED if transition in RESOLVED else AlertStatus.FIRING
    title = name + (f" ({scope})" if scope and scope not in name else "")
    return ParsedDelivery(
        alerts=[
            IncomingAlert(
                fingerprint=fingerprint,
                group_key=group_key,
                group_reason=reason,
                status=status,
                action=status,
                title=_title(title, f"Datadog monitor {monitor}" if monitor else ""),
                labels=labels,
                annotations=annotations,
                starts_at=when if status == AlertStatus.FIRING else None,
                ends_at=(when or now) if status == AlertStatus.RESOLVED else None,
                sender_severity=PRIORITY.get(priority),
                raw=payload,
            )
        ]
    )


def datadog_snippet(integration: Any, urls: dict[str, str]) -> str:
    headers = integration_credential_headers(integration)
    custom_headers = (
        f"  Custom Headers:\n    {json.dumps(headers)}\n"
        if headers
        else "  Custom Headers:   (none: the key in the URL is the only credential)\n"
    )
    payload = "\n".join("    " + line for line in PAYLOAD.splitlines())
    return (
        "Datadog → Integrations → Webhooks → Configuration → Webhooks → + New\n"
        "  Name:             vigil\n"
        f"  URL:              {urls['webhook_url']}\n"
        "  Payload:\n" + payload + "\n" + custom_headers + "  Encode as form:   off\n\n"
        "Then add @webhook-vigil to the message of every monitor whose alerts should reach\n"
        "Vigil, outside any {{#is_alert}} block so that the recovery is sent too: Recovered\n"
        "resolves the alert. Each group of a multi-alert monitor is an alert of its own\n"
        "($ALERT_ID and $ALERT_SCOPE); alerts with one $AGGREG_KEY share an incident;\n"
        "$ALERT_PRIORITY P1–P3 give Sev 1–3, P4 and P5 Sev 4.\n"
        "Protection: the key in the URL"
        + "".join(f" and the {name} header" for name in headers)
        + ";\nneither signs the body, so only HTTPS keeps them secret.\n"
    )


register(IntegrationKind.DATADOG, parser=parse_datadog, snippet=datadog_snippet)
