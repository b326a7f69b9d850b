"""Splunk's webhook alert action: a triggered alert posts a fixed JSON body (Splunk's Alerting
Manual, "Use a webhook alert action")::

    {"result": {<the first result row's fields>}, "sid": "...", "results_link": "...",
     "search_name": "..." | null, "owner": "...", "app": "..."}

Splunk sends no resolve: every delivery fires. The alert's identity is the search's name and,
when the first result has one, its ``host`` (``search_name/host``): the runs of one search for
one host repeat one alert, and a search's alerts share an incident. An unsaved search
(``search_name`` null) is known by its search id, which changes every run.

From the first result row: ``severity`` or ``urgency`` (critical, high, medium, low,
informational, or 1–4) gives the sender's severity; ``title`` (or ``summary``) the alert's
title, by default "<search name> on <host>"; ``_time`` (epoch seconds or RFC 3339) the start;
``description`` the description. Every field not starting with ``_`` is a label (so a search
can set ``metric`` for the alert rules, or ``service`` and ``env`` for routing), next to
``search_name``, ``app`` and ``owner``; ``results_link`` is the annotation ``url``.

Splunk's webhook can send no custom header and signs nothing: the key in the URL is the only
credential.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils import timezone

from ...models import AlertStatus, IntegrationAuth, IntegrationKind
from ..parsing import IncomingAlert, ParsedDelivery, PayloadError, _title, clean, severity_word
from . import register
from ._shared import bounded_key, epoch_time

STRING_FIELDS = ("search_name", "sid", "results_link", "owner", "app")
SEVERITY = {
    "critical": 1,
    "high": 2,
    "medium": 3,
    "low": 4,
    "informational": 4,
    "info": 4,
}
# A result row can be wide: its first fields are labels, each cut to a sensible length.
MAX_LABELS = 50
LABEL_MAX = 500


def _text(value: Any) -> str:
    """A result field as text: a multivalue field's values joined by commas."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return ", ".join(t for t in (_text(v) for v in value) if t)
    return json.dumps(value, sort_keys=True)


def _severity(result: dict[str, Any]) -> int | None:
    for name in ("severity", "urgency"):
        text = _text(result.get(name)).lower()
        if text in SEVERITY:
            return SEVERITY[text]
        level = severity_word(text)
        if level is not None:
            return level
    return None


def parse_splunk(payload: Any) -> ParsedDelivery:
    """A Splunk webhook alert action body: one firing alert. Raises :class:`PayloadError`."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    payload = clean(payload)
    errors: dict[str, list[str]] = {}
    result = payload.get("result")
    if not isinstance(result, dict):
        errors["result"] = ["Must be an object: the first result row of the search."]
        result = {}
    f: dict[str, str] = {}
    for name in STRING_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = ["Must be a string or null."]
        f[name] = value.strip() if isinstance(value, str) else ""
    identity = f["search_name"] or f["sid"]
    if not identity and not errors:
        errors["search_name"] = ["Missing: the saved search's name (or at least its sid)."]
    if errors:
        raise PayloadError(errors)

    host = _text(result.get("host"))
    labels: dict[str, str] = {}
    for key, value in result.items():
        if len(labels) >= MAX_LABELS:
            break
        text = _text(value)
        if isinstance(key, str) and key and not key.startswith("_") and text:
            labels[key] = text[:LABEL_MAX]
    for key in ("search_name", "app", "owner"):
        if f[key]:
            labels[key] = f[key]
    annotations = {
        key: value
        for key, value in (
            ("url", f["results_link"]),
            ("sid", f["sid"]),
            ("description", _text(result.get("description"))),
        )
        if value
    }
    search = f["search_name"] or f"Splunk search {f['sid']}"
    default_title = f"{search} on {host}" if host else search
    return ParsedDelivery(
        alerts=[
            IncomingAlert(
                fingerprint=bounded_key(identity, host),
                group_key=f"splunk:{identity}",
                group_reason=f"same Splunk search ({identity[:120]})",
                status=AlertStatus.FIRING,
                action=AlertStatus.FIRING,
                title=_title(
                    _text(result.get("title")), _text(result.get("summary")), default_title
                ),
                labels=labels,
                annotations=annotations,
                starts_at=epoch_time(result.get("_time"), now=timezone.now()),
                sender_severity=_severity(result),
                raw=payload,
            )
        ]
    )


def splunk_snippet(integration: Any, urls: dict[str, str]) -> str:
    scheme = integration.effective_auth
    warning = (
        ""
        if scheme == IntegrationAuth.URL_KEY
        else f"Note: this integration asks for “{IntegrationAuth(scheme).label}”, which Splunk's\n"
        "webhook cannot send: set its authentication to the URL key alone.\n"
    )
    return (
        "Splunk → Search & Reporting → run the search → Save As → Alert\n"
        "(or Settings → Searches, reports, and alerts → Edit → Edit Alert)\n"
        "  Trigger Actions → + Add Actions → Webhook\n"
        f"    URL: {urls['webhook_url']}\n"
        "Splunk Enterprise 9.0 and later: an administrator adds the URL to the webhook allow\n"
        "list (Settings → Server settings → Webhook allow list).\n\n"
        "Protection: Splunk's webhook sends no custom header and signs nothing, so the key in\n"
        "this URL is the only credential. Keep the URL secret and use HTTPS.\n" + warning + "\n"
        "What Vigil reads: the alert is the search (search_name) and the first result's host;\n"
        "a search's alerts share an incident. From the first result: severity or urgency\n"
        "(critical, high, medium, low or 1–4), title (default: <search name> on <host>),\n"
        "_time (the start); results_link is the alert's link. For example, end the search with\n"
        '  | eval severity="high", title="Checkout errors on ".host\n'
        "Splunk sends no resolve: every triggered run repeats the alert; resolve the incident\n"
        "in Vigil.\n"
    )


register(IntegrationKind.SPLUNK, parser=parse_splunk, snippet=splunk_snippet)
