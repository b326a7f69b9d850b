"""Zabbix (6.0 and later) through a webhook media type.

Zabbix has no fixed webhook body: a media type's JavaScript builds the request from the
media type's parameters, macros Zabbix resolves for each event. Vigil ships that script
(``zabbix_media_type.js`` beside this module) and, in the integration's snippet, an
importable media type holding it with the integration's URL and credential. The script
posts one flat JSON object, one key per parameter::

    {"event_id": "{EVENT.ID}", "event_value": "{EVENT.VALUE}",
     "event_update_status": "{EVENT.UPDATE.STATUS}", "event_source": "{EVENT.SOURCE}",
     "event_name": "{EVENT.NAME}", "severity": "{EVENT.NSEVERITY}",
     "severity_name": "{EVENT.SEVERITY}", "event_timestamp": "{EVENT.TIMESTAMP}",
     "event_date": "{EVENT.DATE}", "event_time": "{EVENT.TIME}", "event_timezone": "UTC",
     "recovery_id": "{EVENT.RECOVERY.ID}", "recovery_timestamp": "{EVENT.RECOVERY.TIMESTAMP}",
     "recovery_date": "{EVENT.RECOVERY.DATE}", "recovery_time": "{EVENT.RECOVERY.TIME}",
     "host": "{HOST.NAME}", "host_ip": "{HOST.IP}", "trigger_id": "{TRIGGER.ID}",
     "trigger_description": "{TRIGGER.DESCRIPTION}", "opdata": "{EVENT.OPDATA}",
     "tags": [{"tag": "...", "value": "..."}], "subject": "{ALERT.SUBJECT}",
     "message": "{ALERT.MESSAGE}", "zabbix_url": "{$ZABBIX.URL}"}

How Vigil reads it:

* Identity: ``event_id``, the problem's id. Zabbix resolves ``{EVENT.ID}`` to the problem
  event in its recovery message too (the recovery's own id is ``{EVENT.RECOVERY.ID}``), so
  the problem and its recovery are one alert. Alerts of one trigger (``trigger_id``) are one
  group: a trigger that fires again while its incident is open joins that incident.
* Status: ``event_value`` 1 (problem) is firing, 0 (recovered, or closed by hand) resolved.
  A problem update (``event_update_status`` 1: acknowledged, commented, severity changed) is
  stored and changes no alert.
* Severity from ``{EVENT.NSEVERITY}``: Disaster (5) → Sev 1, High (4) → Sev 2, Average (3)
  → Sev 3, Warning, Information and Not classified (2, 1, 0) → Sev 4.
* Impact start: ``{EVENT.TIMESTAMP}`` (Unix seconds, Zabbix 7.0 and later); before 7.0,
  ``{EVENT.DATE}`` and ``{EVENT.TIME}`` (``yyyy.mm.dd``, ``hh:mm:ss``), which Zabbix renders
  in the time zone of the user the message is sent to: the ``event_timezone`` parameter
  (an IANA name, ``UTC`` by default) says which. A recovery ends at
  ``{EVENT.RECOVERY.TIMESTAMP}`` (or its date and time).
* Labels: ``host``, ``host_ip``, ``severity`` (Zabbix's name for it), ``trigger_id``, and
  each event tag as ``<tag>: <value>`` (a tag given twice: its values joined with ", ").
  Annotations: ``description`` (the trigger's, else the action's message), ``opdata``, and
  ``url``, the event in Zabbix (``{$ZABBIX.URL}/tr_events.php?...``) when the global macro
  ``{$ZABBIX.URL}`` is set.

A macro Zabbix could not resolve arrives as its literal text (``{EVENT.TIMESTAMP}`` before
7.0) or as ``*UNKNOWN*``, and is read as absent. The media type's Test button runs the script
with the parameters as typed, macros unresolved: an ``event_id`` of ``{EVENT.ID}`` is that
test, answered 200 and not stored.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    parse_time,
)
from . import SenderTest, register

SCRIPT = Path(__file__).with_name("zabbix_media_type.js")
# {EVENT.NSEVERITY}: Not classified, Information, Warning, Average, High, Disaster.
SEVERITY_NAMES = ("Not classified", "Information", "Warning", "Average", "High", "Disaster")
SEVERITY_LEVELS = {5: 1, 4: 2, 3: 3, 2: 4, 1: 4, 0: 4}
# {EVENT.SOURCE}: triggers, internal events and services have problems that recover;
# discovery (1) and autoregistration (2) events do not.
SOURCES = {"0": "trigger", "3": "internal", "4": "service"}
_MACRO = re.compile(r"^\{[#$]?[A-Z0-9_.]+(?::[^}]*)?\}$")
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_DATE = re.compile(r"^([0-9]{4})\.([0-9]{2})\.([0-9]{2})$")
_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})$")


def _value(payload: dict[str, Any], name: str) -> str:
    """A parameter as Zabbix resolved it: "" when missing, blank, not text, an unresolved
    macro or ``*UNKNOWN*``."""
    text = _text(payload.get(name))
    if not text or text == "*UNKNOWN*" or _MACRO.match(text):
        return ""
    return text


def _event_time(
    payload: dict[str, Any], prefix: str, zone: ZoneInfo | None, now: datetime
) -> datetime | None:
    """``<prefix>_timestamp`` (Unix seconds), else ``<prefix>_date`` and ``<prefix>_time``
    in ``zone``; None when missing or unreadable (the receipt time is then used)."""
    stamp = _value(payload, f"{prefix}_timestamp")
    if _DIGITS.match(stamp):
        try:
            moment = datetime.fromtimestamp(int(stamp), tz=UTC)
        except (OverflowError, ValueError, OSError):
            return None
        return parse_time(moment.isoformat(), now=now)
    date = _DATE.match(_value(payload, f"{prefix}_date"))
    time = _TIME.match(_value(payload, f"{prefix}_time"))
    if date is None or time is None or zone is None:
        return None
    year, month, day = (int(part) for part in date.groups())
    hour, minute, second = (int(part) for part in time.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None
    return parse_time(moment.isoformat(), now=now)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _tags(value: Any, errors: dict[str, list[str]]) -> dict[str, str]:
    """``{EVENT.TAGSJSON}``: ``[{"tag": "service", "value": "checkout"}, ...]``."""
    if value is None or (isinstance(value, str) and (not value.strip() or _MACRO.match(value))):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            errors["tags"] = ['Must be {EVENT.TAGSJSON}: [{"tag": "...", "value": "..."}].']
            return {}
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and isinstance(item.get("tag"), str) for item in value
    ):
        errors["tags"] = ['Must be {EVENT.TAGSJSON}: [{"tag": "...", "value": "..."}].']
        return {}
    tags: dict[str, list[str]] = {}
    for item in value:
        name = " ".join(item["tag"].split())
        if not name:
            continue
        tag_value = item.get("value")
        tag_value = tag_value if isinstance(tag_value, str) else ""
        values = tags.setdefault(name, [])
        if tag_value not in values:
            values.append(tag_value)
    return clean({name: ", ".join(v for v in values if v) for name, values in tags.items()})


def parse_zabbix(payload: Any) -> ParsedDelivery:
    """The body Vigil's Zabbix media type script posts (module docstring). Raises
    :class:`SenderTest` for the media type's Test button, :class:`PayloadError` when
    invalid."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    if _text(payload.get("event_id")) == "{EVENT.ID}":
        raise SenderTest(
            "Zabbix media type test received: its macros are unresolved, so nothing was "
            "stored. Problems and recoveries sent by an action are."
        )
    errors: dict[str, list[str]] = {}
    event_id = _value(payload, "event_id")
    if not _DIGITS.match(event_id):
        errors["event_id"] = ["Give Zabbix's numeric event id ({EVENT.ID})."]
    source = _value(payload, "event_source") or "0"
    if source not in SOURCES:
        errors["event_source"] = [
            "Vigil takes trigger (0), internal (3) and service (4) events ({EVENT.SOURCE}); "
            "discovery and autoregistration events are not alerts."
        ]
    update = _value(payload, "event_update_status") or "0"
    if update not in ("0", "1"):
        errors["event_update_status"] = ["Must be 0 or 1 ({EVENT.UPDATE.STATUS})."]
    event_value = _value(payload, "event_value")
    if event_value not in ("0", "1"):
        errors["event_value"] = ["Must be 1 (problem) or 0 (recovery) ({EVENT.VALUE})."]
    severity = _value(payload, "severity")
    if severity and severity not in ("0", "1", "2", "3", "4", "5"):
        errors["severity"] = ["Must be 0–5 ({EVENT.NSEVERITY})."]
    tags = _tags(payload.get("tags"), errors)
    for name in ("event_name", "subject", "host", "message", "trigger_description"):
        if payload.get(name) is not None and not isinstance(payload[name], str):
            errors[name] = ["Must be a string."]
    if errors:
        raise PayloadError(errors)
    if update == "1":
        # An acknowledgement, comment or severity change: kept as a delivery, no alert state.
        return ParsedDelivery(alerts=[], dedup_key=event_id)

    now = timezone.now()
    zone = _zone(_value(payload, "event_timezone"))
    trigger_id = _value(payload, "trigger_id")
    host = _value(payload, "host")
    level = int(severity) if severity else None
    labels = dict(tags)
    labels.update(
        {
            name: value
            for name, value in (
                ("host", host),
                ("host_ip", _value(payload, "host_ip")),
                ("severity", _value(payload, "severity_name") or _severity_name(level)),
                ("trigger_id", trigger_id),
            )
            if value
        }
    )
    annotations: dict[str, str] = {}
    description = _value(payload, "trigger_description") or _value(payload, "message")
    if description:
        annotations["description"] = description
    if _value(payload, "opdata"):
        annotations["opdata"] = _value(payload, "opdata")
    url = _link(_value(payload, "zabbix_url"), trigger_id=trigger_id, event_id=event_id)
    if url:
        annotations["url"] = url
    status = AlertStatus.FIRING if event_value == "1" else AlertStatus.RESOLVED
    ends_at = None
    if status == AlertStatus.RESOLVED:
        ends_at = _event_time(payload, "recovery", zone, now) or now
    group_key = f"trigger:{trigger_id}" if trigger_id else f"event:{event_id}"
    reason = (
        f"same Zabbix trigger ({trigger_id})" if trigger_id else f"same Zabbix event ({event_id})"
    )
    return ParsedDelivery(
        dedup_key=event_id,
        alerts=[
            IncomingAlert(
                fingerprint=event_id[:KEY_MAX],
                group_key=group_key,
                group_reason=reason,
                status=status,
                action=status,
                title=_title(
                    _value(payload, "event_name"),
                    _value(payload, "subject"),
                    f"{host or 'Zabbix'}: problem {event_id}",
                ),
                labels=clean(labels),
                annotations=clean(annotations),
                starts_at=_event_time(payload, "event", zone, now),
                ends_at=ends_at,
                sender_severity=SEVERITY_LEVELS.get(level) if level is not None else None,
                raw=clean(payload),
            )
        ],
    )


def _severity_name(level: int | None) -> str:
    return SEVERITY_NAMES[level] if level is not None else ""


def _link(base: str, *, trigger_id: str, event_id: str) -> str:
    if not re.match(r"^https?://", base):
        return ""
    base = base.rstrip("/")
    if trigger_id:
        return f"{base}/tr_events.php?triggerid={trigger_id}&eventid={event_id}"
    return base


# --- the snippet ----------------------------------------------------------------------------------

PARAMETERS = (
    ("event_date", "{EVENT.DATE}"),
    ("event_id", "{EVENT.ID}"),
    ("event_name", "{EVENT.NAME}"),
    ("event_source", "{EVENT.SOURCE}"),
    ("event_time", "{EVENT.TIME}"),
    ("event_timestamp", "{EVENT.TIMESTAMP}"),
    ("event_timezone", "UTC"),
    ("event_update_status", "{EVENT.UPDATE.STATUS}"),
    ("event_value", "{EVENT.VALUE}"),
    ("host", "{HOST.NAME}"),
    ("host_ip", "{HOST.IP}"),
    ("message", "{ALERT.MESSAGE}"),
    ("opdata", "{EVENT.OPDATA}"),
    ("recovery_date", "{EVENT.RECOVERY.DATE}"),
    ("recovery_id", "{EVENT.RECOVERY.ID}"),
    ("recovery_time", "{EVENT.RECOVERY.TIME}"),
    ("recovery_timestamp", "{EVENT.RECOVERY.TIMESTAMP}"),
    ("severity", "{EVENT.NSEVERITY}"),
    ("severity_name", "{EVENT.SEVERITY}"),
    ("subject", "{ALERT.SUBJECT}"),
    ("tags", "{EVENT.TAGSJSON}"),
    ("trigger_description", "{TRIGGER.DESCRIPTION}"),
    ("trigger_id", "{TRIGGER.ID}"),
    ("zabbix_url", "{$ZABBIX.URL}"),
)
MESSAGES = (
    ("PROBLEM", "Problem: {EVENT.NAME}", "Problem started at {EVENT.TIME} on {EVENT.DATE}"),
    (
        "RECOVERY",
        "Resolved in {EVENT.DURATION}: {EVENT.NAME}",
        "Problem resolved at {EVENT.RECOVERY.TIME} on {EVENT.RECOVERY.DATE}",
    ),
    ("UPDATE", "Updated problem: {EVENT.NAME}", "{USER.FULLNAME} {EVENT.UPDATE.ACTION} problem"),
)


def media_type_yaml(*, url: str, auth: str, token: str, header: str) -> str:
    """A Zabbix 6.0 media type export (importable into 6.0 and later) holding Vigil's
    script with this integration's URL and credential."""
    params = [
        *PARAMETERS,
        ("vigil_auth", auth),
        ("vigil_token", token),
        ("vigil_token_header", header),
        ("vigil_url", url),
    ]
    lines = [
        "zabbix_export:",
        "  version: '6.0'",
        "  media_types:",
        "    - name: Vigil",
        "      type: WEBHOOK",
        "      parameters:",
    ]
    for name, value in params:
        lines += [f"        - name: {name}", f"          value: {json.dumps(value)}"]
    lines += ["      script: |"]
    lines += [f"        {line}" if line else "" for line in SCRIPT.read_text().splitlines()]
    lines += [
        "      timeout: 10s",
        "      description: 'Sends problems and recoveries to Vigil.'",
        "      message_templates:",
    ]
    for mode, subject, message in MESSAGES:
        lines += [
            "        - event_source: TRIGGERS",
            f"          operation_mode: {mode}",
            f"          subject: {json.dumps(subject)}",
            f"          message: {json.dumps(message)}",
        ]
    return "\n".join(lines) + "\n"


def zabbix_snippet(integration: Any, urls: dict[str, str]) -> str:
    scheme = integration.auth or default_auth(integration.kind, integration.secret)
    if scheme == IntegrationAuth.HEADER:
        auth, credential = "header", f"sends {integration.auth_header}: <the secret>"
    elif scheme == IntegrationAuth.HMAC:
        auth, credential = "hmac", "signs each request (X-Vigil-Signature) with the secret"
    else:
        auth, credential = "none", "sends no credential (the URL key alone)"
    yaml = media_type_yaml(
        url=urls["webhook_url"],
        auth=auth,
        token=integration.secret if auth != "none" else "",
        header=integration.auth_header or "X-Vigil-Token",
    )
    return (
        "Zabbix 6.0 or later: save the YAML below as vigil_media_type.yaml and import it\n"
        "(Alerts → Media types → Import; Zabbix 6.0: Administration → Media types → Import).\n"
        f"It posts to {urls['webhook_url']}\n"
        f"and {credential}.\n"
        "Then:\n"
        "  1. Administration → Macros: set {$ZABBIX.URL} to your Zabbix front end's URL\n"
        "     (Vigil's alerts link back to the event).\n"
        "  2. Users → Users → a user for Vigil → Media → Add: type Vigil, send to Vigil.\n"
        "  3. Alerts → Actions → Trigger actions: in Operations and Recovery operations,\n"
        "     send a message to that user through Vigil. Problem updates are stored but\n"
        "     change no alert.\n"
        "  4. Before Zabbix 7.0 (no {EVENT.TIMESTAMP}): set the media type's event_timezone\n"
        "     to that user's time zone (an IANA name such as Europe/Berlin): Zabbix 6 sends\n"
        "     the event's date and time in it.\n"
        "The media type's Test button sends its macros unresolved: Vigil answers 200 and\n"
        "stores nothing.\n\n" + yaml
    )


register(IntegrationKind.ZABBIX, parser=parse_zabbix, snippet=zabbix_snippet)
