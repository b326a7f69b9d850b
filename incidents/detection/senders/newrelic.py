"""New Relic workflows: a webhook destination notified by a workflow posts the workflow's
payload template, filled in for one issue (New Relic's documentation: Alerts → Workflows,
"Workflow variables"; the webhook destination's default template).

Vigil reads the default template's keys:

===================  ==========================  ==========================================
key                  template variable           read as
===================  ==========================  ==========================================
id                   issueId                     the alert's identity and its group: one
                                                 alert, one incident per issue
state                state                       CREATED, ACTIVATED, ACKNOWLEDGED: firing
                                                 (a repeat once known); CLOSED: resolved
priority             priority                    CRITICAL → Sev 1, HIGH → Sev 2,
                                                 MEDIUM → Sev 3, LOW → Sev 4
title                annotations.title.[0]       the title
issueUrl             issuePageUrl                annotation ``url``
createdAt            createdAt (epoch ms)        the start of the issue
updatedAt            updatedAt (epoch ms)        the end, when closed (or ``closedAt``)
impactedEntities,    entitiesData.names,         labels ``entity``, ``policy``,
alertPolicyNames,    accumulations.policyName,   ``condition`` (and ``alertname``, the first
alertConditionNames  accumulations.conditionName condition), ``source``
===================  ==========================  ==========================================

and, when a template adds them, ``runbookUrl`` (accumulations.runbookUrl: annotation
``runbook_url``), ``description`` and ``closedAt``.

"Send test notification" fills the template with New Relic's sample issue (id
``d1b1f3fd-995a-4066-88ab-8ce4f6960654``, the one the template editor previews): it is answered
200 and stores nothing.
"""

from __future__ import annotations

import re
from typing import Any

from django.utils import timezone

from ...models import AlertStatus, IntegrationAuth, IntegrationKind
from ...models.detection import BASIC_AUTH_USER
from ..parsing import KEY_MAX, IncomingAlert, ParsedDelivery, PayloadError, _title, clean
from . import SenderTest, register
from ._shared import epoch_time

STATES = {
    "CREATED": AlertStatus.FIRING,
    "ACTIVATED": AlertStatus.FIRING,
    "ACKNOWLEDGED": AlertStatus.FIRING,
    "CLOSED": AlertStatus.RESOLVED,
}
PRIORITY = {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 3, "LOW": 4}
# New Relic's sample issue: the template preview and "Send test notification" are filled in
# with it.
SAMPLE_ISSUE_IDS = frozenset(
    {"d1b1f3fd-995a-4066-88ab-8ce4f6960654", "0ea2df1c-adab-45d2-aae0-042b609d2322"}
)
LIST_FIELDS = ("impactedEntities", "sources", "alertPolicyNames", "alertConditionNames")
TEXT_FIELDS = ("title", "runbookUrl", "description")
STRING_FIELDS = ("issueUrl", "issuePageUrl", "priority", "trigger", "workflowName")
_ACCOUNT = re.compile(r"/accounts/(\d+)/")

TEMPLATE = """{
  "id": {{ json issueId }},
  "issueUrl": {{ json issuePageUrl }},
  "title": {{ json annotations.title.[0] }},
  "priority": {{ json priority }},
  "impactedEntities": {{json entitiesData.names}},
  "totalIncidents": {{json totalIncidents}},
  "state": {{ json state }},
  "trigger": {{ json triggerEvent }},
  "isCorrelated": {{ json isCorrelated }},
  "createdAt": {{ createdAt }},
  "updatedAt": {{ updatedAt }},
  "sources": {{ json accumulations.source }},
  "alertPolicyNames": {{ json accumulations.policyName }},
  "alertConditionNames": {{ json accumulations.conditionName }},
  "workflowName": {{ json workflowName }}
}"""


def _strings(value: Any, name: str, errors: dict[str, list[str]]) -> list[str]:
    """A list of strings (one string counts as a list of one); scalars are written out."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            if item.strip():
                out.append(item.strip())
        elif isinstance(item, bool | int | float):
            out.append(str(item))
        elif item is not None:
            errors[name] = ["Must be a string or a list of strings."]
            return []
    return out


def _is_sample(issue_id: str, url: str) -> bool:
    return issue_id in SAMPLE_ISSUE_IDS or any(sample in url for sample in SAMPLE_ISSUE_IDS)


def parse_newrelic(payload: Any) -> ParsedDelivery:
    """A New Relic workflow webhook body: one alert per issue, firing or resolved by its
    state. Raises :class:`PayloadError`, or :class:`SenderTest` for New Relic's test
    notification."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    payload = clean(payload)
    errors: dict[str, list[str]] = {}
    issue_id = payload.get("id", payload.get("issueId"))
    if not isinstance(issue_id, str) or not issue_id.strip():
        errors["id"] = ["The issue id ({{ json issueId }}): a non-blank string is required."]
        issue_id = ""
    elif len(issue_id.strip()) > KEY_MAX:
        errors["id"] = [f"At most {KEY_MAX} characters."]
    issue_id = issue_id.strip()
    strings: dict[str, str] = {}
    for name in STRING_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = ["Must be a string."]
        strings[name] = value.strip() if isinstance(value, str) else ""
    url = strings["issueUrl"] or strings["issuePageUrl"]
    if issue_id and _is_sample(issue_id, url):
        raise SenderTest(
            "New Relic test notification received: this destination reaches Vigil and its "
            "credential is accepted. No alert was stored."
        )
    state_value = payload.get("state")
    state = state_value.strip().upper() if isinstance(state_value, str) else ""
    if state not in STATES:
        errors["state"] = [f"Must be one of {', '.join(STATES)} ({{{{ json state }}}})."]
    lists = {name: _strings(payload.get(name), name, errors) for name in LIST_FIELDS}
    texts = {name: _strings(payload.get(name), name, errors) for name in TEXT_FIELDS}
    if errors:
        raise PayloadError(errors)

    status = STATES[state]
    priority = strings["priority"].upper()
    conditions, policies = lists["alertConditionNames"], lists["alertPolicyNames"]
    account = _ACCOUNT.search(url)
    labels = {
        key: value
        for key, value in (
            ("priority", priority),
            ("alertname", conditions[0] if conditions else ""),
            ("condition", ", ".join(conditions)),
            ("policy", ", ".join(policies)),
            ("entity", ", ".join(lists["impactedEntities"])),
            ("source", ", ".join(lists["sources"])),
            ("workflow", strings["workflowName"]),
            ("account", account.group(1) if account else ""),
        )
        if value
    }
    annotations = {
        key: value
        for key, value in (
            ("url", url),
            ("runbook_url", texts["runbookUrl"][0] if texts["runbookUrl"] else ""),
            ("description", "\n".join(texts["description"])),
            ("state", state),
            ("trigger", strings["trigger"]),
            ("issue_id", issue_id),
            ("total_incidents", str(payload.get("totalIncidents") or "")),
        )
        if value
    }
    now = timezone.now()
    ends_at = None
    if status == AlertStatus.RESOLVED:
        ends_at = (
            epoch_time(payload.get("closedAt"), now=now)
            or epoch_time(payload.get("updatedAt"), now=now)
            or now
        )
    return ParsedDelivery(
        dedup_key=issue_id,
        alerts=[
            IncomingAlert(
                fingerprint=issue_id,
                group_key=f"newrelic:{issue_id}",
                group_reason=f"same New Relic issue ({issue_id[:120]})",
                status=status,
                action=status,
                title=_title(
                    texts["title"][0] if texts["title"] else "",
                    conditions[0] if conditions else "",
                    f"New Relic issue {issue_id}",
                ),
                labels=labels,
                annotations=annotations,
                starts_at=epoch_time(payload.get("createdAt"), now=now),
                ends_at=ends_at,
                sender_severity=PRIORITY.get(priority),
                raw=payload,
            )
        ],
    )


def newrelic_snippet(integration: Any, urls: dict[str, str]) -> str:
    scheme, secret = integration.effective_auth, integration.secret
    header = ""
    if scheme == IntegrationAuth.HEADER:
        header = integration.auth_header
        auth = f"  Custom headers → Add custom header:\n    Name:  {header}\n    Value: {secret}\n"
    elif scheme == IntegrationAuth.BEARER:
        header = "Authorization"
        auth = f"  Authorization → Bearer token:  {secret}\n"
    elif scheme == IntegrationAuth.BASIC:
        header = "Authorization"
        auth = (
            "  Authorization → Basic authentication:\n"
            f"    User name: {BASIC_AUTH_USER}\n"
            f"    Password:  {secret}\n"
        )
    else:
        auth = "  Authorization:   none (the key in the URL is the only credential)\n"
    template = "\n".join("    " + line for line in TEMPLATE.splitlines())
    return (
        "New Relic → Alerts → Destinations → + Add a destination → Webhook\n"
        "  Webhook name:  Vigil\n"
        f"  Endpoint URL:  {urls['webhook_url']}\n" + auth + "\n"
        "New Relic → Alerts → Workflows → + Add a workflow\n"
        "  Filter the issues Vigil should receive; Notify → Webhook → destination Vigil.\n"
        "  Template (New Relic's default; Vigil reads these keys):\n" + template + "\n"
        '  Optional: "runbookUrl": {{ json accumulations.runbookUrl }}\n'
        "  Notify when: Activated, Acknowledged and Closed (Closed resolves the alert).\n"
        '  "Send test notification" is answered 200 and stores nothing.\n\n'
        "One alert and one incident per issue (its id); priority CRITICAL, HIGH, MEDIUM,\n"
        "LOW gives Sev 1–4; createdAt is when the impact started.\n"
        "Protection: the key in the URL"
        + (f" and the {header} header" if header else "")
        + ";\nneither signs the body, so only HTTPS keeps them secret.\n"
    )


register(IntegrationKind.NEWRELIC, parser=parse_newrelic, snippet=newrelic_snippet)
