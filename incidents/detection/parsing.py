"""Each sender's wire format, validated and read into :class:`IncomingAlert`.

Strict about what matters (the shape, statuses, actions, keys) and lenient about what does
not: a missing or unreadable timestamp becomes "now" and is flagged as estimated, strings are
cleaned of what no database column can hold (NUL, lone surrogates), and long titles are cut.

The parsers run twice per delivery: in the request, to answer 400 with the reasons before
anything is stored, and in the task that processes the stored body. They do no I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from ..models import AlertStatus, DetectionSource, IntegrationKind

TITLE_MAX = 255
KEY_MAX = 255
PD_SUMMARY_MAX = 1024
# A sender's clock may run a little fast; a start time further ahead than this is not believed.
CLOCK_SKEW = timedelta(minutes=5)

# PagerDuty's severities and their Vigil levels; also read from an alert's ``severity`` label
# and the generic hook's ``severity`` field.
PD_SEVERITY = {"critical": 1, "error": 2, "warning": 3, "info": 4}
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
GENERIC_SOURCES = (
    DetectionSource.MONITORING,
    DetectionSource.THIRD_PARTY,
    DetectionSource.SECURITY_MONITORING,
    DetectionSource.ROUTINE_CHECK,
)
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class PayloadError(Exception):
    """The body is not a valid event of its sender; ``errors`` maps fields to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class IncomingAlert:
    """One alert of a delivery, in the shape the processing needs."""

    fingerprint: str
    group_key: str
    group_reason: str
    status: str  # firing or resolved
    title: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    sender_severity: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # PagerDuty's event_action (trigger, acknowledge, resolve); firing/resolved otherwise.
    action: str = ""
    detection_source: str = DetectionSource.MONITORING

    @property
    def starts_at_estimated(self) -> bool:
        return self.starts_at is None


@dataclass
class ParsedDelivery:
    alerts: list[IncomingAlert]
    dedup_key: str = ""


# --- small readers --------------------------------------------------------------------------


def clean(value: Any) -> Any:
    """``value`` with NUL characters and lone surrogates replaced in every string (PostgreSQL
    text and jsonb refuse both)."""
    if isinstance(value, str):
        return _BAD_CHARS.sub("\ufffd", value) if _BAD_CHARS.search(value) else value
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def parse_time(value: Any, *, now: datetime | None = None) -> datetime | None:
    """An RFC 3339 / ISO 8601 time, or None when missing, zero (Go's 0001-01-01), unreadable
    or more than ``CLOCK_SKEW`` in the future. A time slightly ahead is taken as now."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    now = now or timezone.now()
    if parsed > now + CLOCK_SKEW:
        return None
    return min(parsed, now)


def parse_number(value: Any) -> float | None:
    """A finite number from a JSON number or a string such as ``"7.2%"`` or ``"5.3s"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _NUMBER.match(value)
        if not match:
            return None
        number = float(match.group(1))
    else:
        return None
    return number if math.isfinite(number) else None


def severity_word(value: Any) -> int | None:
    """A Vigil level from a PagerDuty severity word or a level number (1–4)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 1 <= value <= 4:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in PD_SEVERITY:
            return PD_SEVERITY[text]
        if text in ("1", "2", "3", "4"):
            return int(text)
    return None


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()


def labels_fingerprint(labels: dict[str, str]) -> str:
    return _hash(json.dumps(labels, sort_keys=True))[:16]


def _string_map(value: Any, name: str, errors: dict[str, list[str]]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.setdefault(name, []).append("Must be an object of strings.")
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[key] = item
        elif item is None or isinstance(item, bool | int | float):
            out[key] = "" if item is None else json.dumps(item)
        else:
            errors.setdefault(f"{name}.{key}", []).append("Must be a string.")
    return clean(out)


def _text(value: Any) -> str:
    return clean(value).strip() if isinstance(value, str) else ""


def _title(*candidates: Any) -> str:
    for candidate in candidates:
        text = " ".join(_text(candidate).split())
        if text:
            return text[:TITLE_MAX]
    return "Alert"


# --- Alertmanager and Grafana ----------------------------------------------------------------


def _alertmanager_like(
    payload: dict[str, Any], *, grafana: bool, keep_raw: bool = True
) -> ParsedDelivery:
    errors: dict[str, list[str]] = {}
    version = payload.get("version")
    if not grafana and version != "4":
        errors["version"] = ['Alertmanager webhook payloads are version "4".']
    if grafana and version not in (None, "1"):
        errors["version"] = ['Grafana webhook payloads are version "1".']
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        errors["alerts"] = ["Must be a non-empty list of alerts."]
        raise PayloadError(errors)
    group_key = payload.get("groupKey")
    if group_key is None:
        group_key = json.dumps(payload.get("groupLabels") or {}, sort_keys=True)
    if not isinstance(group_key, str):
        errors["groupKey"] = ["Must be a string."]
    group_key = clean(str(group_key))
    sender = "Grafana" if grafana else "Alertmanager"
    reason = f"same {sender} group ({group_key[:120]})"
    now = timezone.now()
    out: list[IncomingAlert] = []
    for index, item in enumerate(alerts):
        where = f"alerts.{index}"
        if not isinstance(item, dict):
            errors[where] = ["Must be an object."]
            continue
        status = item.get("status")
        if status not in (AlertStatus.FIRING, AlertStatus.RESOLVED):
            errors[f"{where}.status"] = ['Must be "firing" or "resolved".']
            continue
        labels = _string_map(item.get("labels"), f"{where}.labels", errors)
        annotations = _string_map(item.get("annotations"), f"{where}.annotations", errors)
        fingerprint = item.get("fingerprint")
        if fingerprint is None:
            fingerprint = labels_fingerprint(labels)
        if not isinstance(fingerprint, str) or not fingerprint.strip():
            errors[f"{where}.fingerprint"] = ["Must be a non-empty string."]
            continue
        if len(fingerprint) > KEY_MAX:
            errors[f"{where}.fingerprint"] = [f"At most {KEY_MAX} characters."]
            continue
        values: dict[str, float] = {}
        if grafana and isinstance(item.get("values"), dict):
            for key, raw_value in item["values"].items():
                number = parse_number(raw_value)
                if number is not None:
                    values[clean(key)] = number
        ends_at = parse_time(item.get("endsAt"), now=now)
        if status == AlertStatus.RESOLVED and ends_at is None:
            ends_at = now
        out.append(
            IncomingAlert(
                fingerprint=clean(fingerprint.strip()),
                group_key=group_key,
                group_reason=reason,
                status=status,
                action=status,
                title=_title(
                    annotations.get("summary"),
                    annotations.get("title"),
                    " ".join(filter(None, [labels.get("alertname"), labels.get("instance")])),
                ),
                labels=labels,
                annotations=annotations,
                values=values,
                starts_at=parse_time(item.get("startsAt"), now=now),
                ends_at=ends_at if status == AlertStatus.RESOLVED else None,
                sender_severity=severity_word(labels.get("severity")),
                raw=clean(item) if keep_raw else {},
            )
        )
    if errors:
        raise PayloadError(errors)
    return ParsedDelivery(alerts=out)


def parse_alertmanager(payload: Any, *, keep_raw: bool = True) -> ParsedDelivery:
    """An Alertmanager ``webhook_config`` body (version 4): one group, one alert per
    fingerprint, each firing or resolved."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    return _alertmanager_like(payload, grafana=False, keep_raw=keep_raw)


def parse_grafana(payload: Any, *, keep_raw: bool = True) -> ParsedDelivery:
    """A Grafana alerting webhook body (version 1): the Alertmanager shape plus ``values``
    per alert (read for the alert rules' thresholds)."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    return _alertmanager_like(payload, grafana=True, keep_raw=keep_raw)


# --- PagerDuty Events API v2 ------------------------------------------------------------------


def pagerduty_errors(payload: Any) -> list[str]:
    """PagerDuty's own validation of an event, with its wording; empty when valid. The
    routing key is checked by the caller (it names the integration)."""
    if not isinstance(payload, dict):
        return ["Event object is invalid: the body must be a JSON object."]
    errors: list[str] = []
    action = payload.get("event_action")
    if not isinstance(action, str) or not action:
        errors.append("'event_action' is missing or blank")
    elif action not in PD_ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup_key = payload.get("dedup_key")
    if dedup_key is not None:
        if not isinstance(dedup_key, str) or not dedup_key.strip():
            errors.append("'dedup_key' must be a non-blank string")
        elif len(dedup_key) > KEY_MAX:
            errors.append("'dedup_key' is too long (at most 255 characters)")
    elif action in ("acknowledge", "resolve"):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        body = payload.get("payload")
        if not isinstance(body, dict):
            errors.append("'payload' is missing or blank")
        else:
            for name in ("summary", "source"):
                if not isinstance(body.get(name), str) or not body[name].strip():
                    errors.append(f"'payload.{name}' is missing or blank")
            severity = body.get("severity")
            if not isinstance(severity, str) or not severity:
                errors.append("'payload.severity' is missing or blank")
            elif severity not in PD_SEVERITY:
                errors.append(
                    "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
                )
            for name in ("component", "group", "class", "timestamp"):
                if body.get(name) is not None and not isinstance(body[name], str):
                    errors.append(f"'payload.{name}' must be a string")
    for name, required in (("links", "href"), ("images", "src")):
        items = payload.get(name)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get(required), str) for i in items
        ):
            errors.append(f"'{name}' must be a list of objects with '{required}'")
    return errors


def parse_pagerduty(payload: Any, *, dedup_key: str) -> ParsedDelivery:
    """A PagerDuty Events API v2 event; ``dedup_key`` is the event's own or the one generated
    when a trigger came without one. Raises :class:`PayloadError` when invalid."""
    errors = pagerduty_errors(payload)
    if errors:
        raise PayloadError({"event": errors})
    action = payload["event_action"]
    body = payload.get("payload") if isinstance(payload.get("payload"), dict) else {}
    labels = {
        name: _text(body.get(name))
        for name in ("source", "component", "group", "class", "severity")
        if _text(body.get(name))
    }
    details = body.get("custom_details")
    annotations = {}
    if details is not None:
        annotations["custom_details"] = (
            details if isinstance(details, str) else json.dumps(details, sort_keys=True)
        )
    annotations = clean(annotations)
    raw = clean({k: v for k, v in payload.items() if k != "routing_key"})
    dedup_key = clean(dedup_key)
    status = AlertStatus.RESOLVED if action == "resolve" else AlertStatus.FIRING
    return ParsedDelivery(
        dedup_key=dedup_key,
        alerts=[
            IncomingAlert(
                fingerprint=dedup_key,
                group_key=dedup_key,
                group_reason=f"same PagerDuty dedup_key ({dedup_key[:120]})",
                status=status,
                action=action,
                title=_title(body.get("summary"), dedup_key),
                labels=labels,
                annotations=annotations,
                starts_at=parse_time(body.get("timestamp")) if action == "trigger" else None,
                ends_at=timezone.now() if action == "resolve" else None,
                sender_severity=PD_SEVERITY.get(body.get("severity")),
                raw=raw,
            )
        ],
    )


# --- Vigil's generic JSON -----------------------------------------------------------------------


def parse_generic(payload: Any) -> ParsedDelivery:
    """Vigil's generic alert (README, "Sending alerts to Vigil")::

        {"title": "...", "status": "firing" | "resolved", "dedup_key": "...",
         "group_key": "...", "severity": 1-4 | "critical" | "error" | "warning" | "info",
         "labels": {...}, "annotations": {...}, "value": 7.2, "starts_at": "...",
         "ends_at": "...", "description": "...", "detection_source": "monitoring"}

    Only ``title`` is required. ``dedup_key`` defaults to a hash of the title and labels,
    ``group_key`` to the dedup key.
    """
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    title = payload.get("title")
    if not isinstance(title, str) or not title.strip():
        errors["title"] = ["A non-blank string is required."]
    status = payload.get("status", AlertStatus.FIRING)
    if status not in (AlertStatus.FIRING, AlertStatus.RESOLVED):
        errors["status"] = ['Must be "firing" or "resolved".']
    labels = _string_map(payload.get("labels"), "labels", errors)
    annotations = _string_map(payload.get("annotations"), "annotations", errors)
    keys: dict[str, str] = {}
    for name in ("dedup_key", "group_key"):
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            errors[name] = ["Must be a non-blank string."]
        elif len(value) > KEY_MAX:
            errors[name] = [f"At most {KEY_MAX} characters."]
        else:
            keys[name] = clean(value.strip())
    severity = payload.get("severity")
    level = severity_word(severity)
    if severity is not None and level is None:
        errors["severity"] = ["Give 1–4 or one of critical, error, warning, info."]
    value = payload.get("value")
    number = parse_number(value)
    if value is not None and number is None:
        errors["value"] = ["Must be a number."]
    source = payload.get("detection_source", DetectionSource.MONITORING)
    if source not in GENERIC_SOURCES:
        errors["detection_source"] = [f"Must be one of: {', '.join(GENERIC_SOURCES)}."]
    description = payload.get("description")
    if description is not None and not isinstance(description, str):
        errors["description"] = ["Must be a string."]
    if errors:
        raise PayloadError(errors)
    if description:
        annotations.setdefault("description", clean(description))
    title = _title(title)
    dedup_key = keys.get("dedup_key") or _hash(title, json.dumps(labels, sort_keys=True))[:32]
    group_key = keys.get("group_key") or dedup_key
    now = timezone.now()
    ends_at = parse_time(payload.get("ends_at"), now=now)
    return ParsedDelivery(
        dedup_key=dedup_key,
        alerts=[
            IncomingAlert(
                fingerprint=dedup_key,
                group_key=group_key,
                group_reason=(
                    f"same group_key ({group_key[:120]})"
                    if "group_key" in keys
                    else f"same dedup_key ({dedup_key[:120]})"
                ),
                status=status,
                action=status,
                title=title,
                labels=labels,
                annotations=annotations,
                values={"value": number} if number is not None else {},
                starts_at=parse_time(payload.get("starts_at"), now=now),
                ends_at=(ends_at or now) if status == AlertStatus.RESOLVED else None,
                sender_severity=level,
                raw=clean(payload),
                detection_source=source,
            )
        ],
    )


def parse_delivery(
    kind: str, payload: Any, *, dedup_key: str = "", keep_raw: bool = True
) -> ParsedDelivery:
    """The alerts of one delivery of ``kind``; raises :class:`PayloadError`. The request
    only validates (``keep_raw=False`` skips copying each alert's raw object)."""
    if kind == IntegrationKind.ALERTMANAGER:
        return parse_alertmanager(payload, keep_raw=keep_raw)
    if kind == IntegrationKind.GRAFANA:
        return parse_grafana(payload, keep_raw=keep_raw)
    if kind == IntegrationKind.PAGERDUTY:
        return parse_pagerduty(payload, dedup_key=dedup_key)
    if kind == IntegrationKind.GENERIC:
        return parse_generic(payload)
    from .senders import PARSERS, load

    if not PARSERS:
        load()
    if kind in PARSERS:
        return PARSERS[kind](payload)
    raise ValueError(f"Unknown integration kind {kind!r}")
