"""Nagios and Icinga 2: a notification command runs ``vigil-notify`` (``contrib/``, Python 3
standard library only), which posts one JSON object per notification, signed with the
integration's secret (``X-Vigil-Signature`` over ``<timestamp>.<body>``, the HMAC scheme) or
with the secret in a static header.

The object (``version`` 1; every field but ``notification_type`` and ``host`` optional)::

    {"version": 1, "monitor": "nagios" | "icinga2",
     "notification_type": "PROBLEM", "host": "db-1", "host_address": "10.0.0.7",
     "host_state": "UP", "host_output": "...",
     "service": "PostgreSQL", "service_state": "CRITICAL", "service_output": "...",
     "long_output": "...", "last_state_change": 1795772400, "problem_id": "4711",
     "author": "...", "comment": "..."}

A notification with a ``service`` is about that service (``service_state`` required), one
without about the host (``host_state`` required). The alert is the check: host and service
(or the host alone) are its identity and, unless the integration groups by labels, its group,
so a PROBLEM and the RECOVERY of the same check meet in one alert.

=========================  ===============================================================
notification type          becomes
=========================  ===============================================================
PROBLEM                    firing (the state must be a problem state)
RECOVERY                   resolved (the state must be OK or UP)
ACKNOWLEDGEMENT, CUSTOM,   with a problem state: firing again (a repeat changes nothing of
FLAPPINGSTART              an alert already firing, and opens the incident Vigil missed
                           when its PROBLEM never arrived); with OK or UP: ignored
FLAPPINGSTOP/END/DISABLED  ignored: they say whether notifications flow, not how the
DOWNTIMESTART/END/         check is; the next PROBLEM or RECOVERY says that (planned work
CANCELLED/REMOVED          is a maintenance window in Vigil)
=========================  ===============================================================

Ignored notifications are answered 200 ``{"status": "ignored", "detail": ...}`` (after the
credential is checked) and nothing is stored. Severity: CRITICAL, DOWN and UNREACHABLE are
Sev 2, WARNING and UNKNOWN Sev 3 (alert rules may say otherwise; Sev 1 is never inferred from
a check state). The impact starts at ``last_state_change`` (Unix seconds, as Nagios'
``$LASTSERVICESTATECHANGE$`` and Icinga 2's ``$service.last_state_change$`` give it); a
recovery ends at it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from ...models import AlertStatus, IntegrationAuth, IntegrationKind
from ..parsing import (
    CLOCK_SKEW,
    KEY_MAX,
    IncomingAlert,
    ParsedDelivery,
    PayloadError,
    _title,
    clean,
)
from . import SenderTest, register

SERVICE_STATES = {"OK": None, "WARNING": 3, "CRITICAL": 2, "UNKNOWN": 3}
HOST_STATES = {"UP": None, "DOWN": 2, "UNREACHABLE": 2}
OK_STATES = frozenset({"OK", "UP"})
FIRING_TYPES = frozenset({"PROBLEM"})
RESOLVED_TYPES = frozenset({"RECOVERY"})
# Carry the check's current state: firing again when it is a problem, ignored when OK.
STATE_TYPES = frozenset({"ACKNOWLEDGEMENT", "CUSTOM", "FLAPPINGSTART"})
IGNORED_TYPES = frozenset(
    {
        "FLAPPINGSTOP",
        "FLAPPINGEND",
        "FLAPPINGDISABLED",
        "DOWNTIMESTART",
        "DOWNTIMEEND",
        "DOWNTIMECANCELLED",
        "DOWNTIMEREMOVED",
    }
)
TYPES = FIRING_TYPES | RESOLVED_TYPES | STATE_TYPES | IGNORED_TYPES
MONITORS = ("nagios", "icinga2")
TEXT_FIELDS = (
    "host_address",
    "host_output",
    "service_output",
    "long_output",
    "problem_id",
    "author",
    "comment",
)
TEXT_MAX = 8000
SCRIPT = "incidents/detection/senders/contrib/vigil-notify"


def _word(value: Any) -> str:
    """``"Flapping Start"``, ``"flapping_start"`` → ``"FLAPPINGSTART"``."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value.upper() if ch.isalpha())


def _epoch(value: Any, now: datetime) -> datetime | None:
    """Unix seconds (Nagios gives whole seconds, Icinga 2 a fraction) as a time; None when
    missing, zero, unreadable or further ahead than the clock skew allowed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    try:
        parsed = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if parsed > now + CLOCK_SKEW:
        return None
    return min(parsed, now)


def _identity(host: str, service: str) -> str:
    key = f"{host}/{service}" if service else host
    if len(key) <= KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:40]
    return f"{key[: KEY_MAX - 41]}/{digest}"


def parse_nagios(payload: Any) -> ParsedDelivery:
    """One Nagios or Icinga 2 notification as ``vigil-notify`` sends it (module docstring)."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    version = payload.get("version", 1)
    if version not in (1, "1"):
        errors["version"] = ["Version 1 is the only one."]
    kind = _word(payload.get("notification_type"))
    if kind not in TYPES:
        errors["notification_type"] = [f"Give one of: {', '.join(sorted(TYPES))}."]
    monitor = payload.get("monitor", "nagios")
    if monitor not in MONITORS:
        errors["monitor"] = [f"Give one of: {', '.join(MONITORS)}."]
    host = payload.get("host")
    if not isinstance(host, str) or not host.strip():
        errors["host"] = ["A non-blank string is required (the host name)."]
        host = ""
    service = payload.get("service")
    if service is None:
        service = ""
    if not isinstance(service, str):
        errors["service"] = ["Must be a string (the service description)."]
        service = ""
    host, service = clean(host.strip()), clean(service.strip())
    if service:
        field, states = "service_state", SERVICE_STATES
    else:
        field, states = "host_state", HOST_STATES
    state = _word(payload.get(field))
    if state not in states:
        what = "service" if service else "host (no service given)"
        errors[field] = [f"A notification about a {what} needs one of: {', '.join(states)}."]
    texts: dict[str, str] = {}
    for name in TEXT_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            errors[name] = ["Must be a string."]
        elif value.strip():
            texts[name] = clean(value.strip())[:TEXT_MAX]
    if not errors and kind in FIRING_TYPES and state in OK_STATES:
        errors[field] = [f"A PROBLEM notification with state {state} is contradictory."]
    if not errors and kind in RESOLVED_TYPES and state not in OK_STATES:
        errors[field] = [f"A RECOVERY notification with state {state} is contradictory."]
    if errors:
        raise PayloadError(errors)
    if kind in IGNORED_TYPES or (kind in STATE_TYPES and state in OK_STATES):
        detail = f"{kind} notification ignored: it does not change whether the check fails."
        raise SenderTest(detail, body={"status": "ignored", "detail": detail})

    now = timezone.now()
    changed = _epoch(payload.get("last_state_change"), now)
    resolved = kind in RESOLVED_TYPES
    identity = _identity(host, service)
    labels = {"host": host, "monitor": monitor, "state": state}
    if service:
        labels["service"] = service
    if "host_address" in texts:
        labels["host_address"] = texts.pop("host_address")
    output = texts.get("service_output" if service else "host_output", "")
    first_line = output.splitlines()[0] if output else ""
    check = f"{service} on {host}" if service else host
    annotations = {"notification_type": kind, **texts}
    if output:
        annotations["summary"] = first_line
    return ParsedDelivery(
        alerts=[
            IncomingAlert(
                fingerprint=identity,
                group_key=identity,
                group_reason=f"same check ({identity[:120]})",
                status=AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
                action=AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
                title=_title(f"{check} {state}: {first_line}" if first_line else ""),
                labels=labels,
                annotations=annotations,
                starts_at=None if resolved else changed,
                ends_at=(changed or now) if resolved else None,
                sender_severity=states[state],
                raw=clean(payload),
            )
        ]
    )


def _credential_arguments(integration: Any) -> tuple[str, str]:
    """The script's authentication arguments for Nagios' command line and Icinga 2's
    arguments dictionary."""
    scheme = integration.effective_auth
    if scheme == IntegrationAuth.HEADER:
        header = integration.auth_header
        return (
            f"--auth header --header-name {shlex.quote(header)} ",
            f'    "--auth" = "header"\n    "--header-name" = {json.dumps(header)}\n',
        )
    return "--auth hmac ", '    "--auth" = "hmac"\n'


def nagios_snippet(integration: Any, urls: dict[str, str]) -> str:
    url = urls["webhook_url"]
    secret = integration.secret
    nagios_auth, icinga_auth = _credential_arguments(integration)
    script = "/usr/local/bin/vigil-notify"
    common = f"{script} --url {shlex.quote(url)} {nagios_auth}--secret-file /etc/vigil/secret"
    icinga_url = json.dumps(url)
    return (
        f"# 1. On the Nagios / Icinga 2 host: Vigil's {SCRIPT} (Python 3, no\n"
        "#    dependencies) and the secret, readable by the monitoring user only.\n"
        f"install -m 755 vigil-notify {script}\n"
        "install -d -m 750 /etc/vigil\n"
        f"printf '%s' {shlex.quote(secret)} > /etc/vigil/secret\n"
        "chmod 640 /etc/vigil/secret   # group: the nagios / icinga user's\n"
        "\n"
        "# 2a. Nagios (objects/commands.cfg); add vigil to a contact's notification commands.\n"
        "define command {\n"
        "    command_name    notify-host-by-vigil\n"
        f"    command_line    {common} --monitor nagios "
        '--type "$NOTIFICATIONTYPE$" --host "$HOSTNAME$" --host-address "$HOSTADDRESS$" '
        '--host-state "$HOSTSTATE$" --host-output "$HOSTOUTPUT$" '
        '--long-output "$LONGHOSTOUTPUT$" --last-state-change "$LASTHOSTSTATECHANGE$" '
        '--problem-id "$HOSTPROBLEMID$" --author "$NOTIFICATIONAUTHOR$" '
        '--comment "$NOTIFICATIONCOMMENT$"\n'
        "}\n"
        "define command {\n"
        "    command_name    notify-service-by-vigil\n"
        f"    command_line    {common} --monitor nagios "
        '--type "$NOTIFICATIONTYPE$" --host "$HOSTNAME$" --host-address "$HOSTADDRESS$" '
        '--host-state "$HOSTSTATE$" --service "$SERVICEDESC$" '
        '--service-state "$SERVICESTATE$" --service-output "$SERVICEOUTPUT$" '
        '--long-output "$LONGSERVICEOUTPUT$" --last-state-change "$LASTSERVICESTATECHANGE$" '
        '--problem-id "$SERVICEPROBLEMID$" --author "$NOTIFICATIONAUTHOR$" '
        '--comment "$NOTIFICATIONCOMMENT$"\n'
        "}\n"
        "define contact {\n"
        "    contact_name                   vigil\n"
        "    alias                          Vigil\n"
        "    host_notifications_enabled     1\n"
        "    service_notifications_enabled  1\n"
        "    host_notification_period       24x7\n"
        "    service_notification_period    24x7\n"
        "    host_notification_options      d,u,r,f\n"
        "    service_notification_options   w,u,c,r,f\n"
        "    host_notification_commands     notify-host-by-vigil\n"
        "    service_notification_commands  notify-service-by-vigil\n"
        "}\n"
        "\n"
        "# 2b. Icinga 2 (conf.d/vigil.conf)\n"
        'object NotificationCommand "vigil-host" {\n'
        f'  command = [ "{script}" ]\n'
        "  arguments = {\n"
        f'    "--url" = {icinga_url}\n'
        f"{icinga_auth}"
        '    "--secret-file" = "/etc/vigil/secret"\n'
        '    "--monitor" = "icinga2"\n'
        '    "--type" = "$notification.type$"\n'
        '    "--host" = "$host.name$"\n'
        '    "--host-address" = "$address$"\n'
        '    "--host-state" = "$host.state$"\n'
        '    "--host-output" = "$host.output$"\n'
        '    "--last-state-change" = "$host.last_state_change$"\n'
        '    "--author" = "$notification.author$"\n'
        '    "--comment" = "$notification.comment$"\n'
        "  }\n"
        "}\n"
        'object NotificationCommand "vigil-service" {\n'
        f'  command = [ "{script}" ]\n'
        "  arguments = {\n"
        f'    "--url" = {icinga_url}\n'
        f"{icinga_auth}"
        '    "--secret-file" = "/etc/vigil/secret"\n'
        '    "--monitor" = "icinga2"\n'
        '    "--type" = "$notification.type$"\n'
        '    "--host" = "$host.name$"\n'
        '    "--host-address" = "$address$"\n'
        '    "--host-state" = "$host.state$"\n'
        '    "--service" = "$service.name$"\n'
        '    "--service-state" = "$service.state$"\n'
        '    "--service-output" = "$service.output$"\n'
        '    "--last-state-change" = "$service.last_state_change$"\n'
        '    "--author" = "$notification.author$"\n'
        '    "--comment" = "$notification.comment$"\n'
        "  }\n"
        "}\n"
        'object User "vigil" { display_name = "Vigil" }\n'
        'apply Notification "vigil" to Host {\n'
        '  command = "vigil-host"\n'
        '  users = [ "vigil" ]\n'
        "  types = [ Problem, Recovery, Acknowledgement, Custom, FlappingStart ]\n"
        "  states = [ Up, Down ]\n"
        "  interval = 0\n"
        "  assign where true\n"
        "}\n"
        'apply Notification "vigil" to Service {\n'
        '  command = "vigil-service"\n'
        '  users = [ "vigil" ]\n'
        "  types = [ Problem, Recovery, Acknowledgement, Custom, FlappingStart ]\n"
        "  states = [ OK, Warning, Critical, Unknown ]\n"
        "  interval = 0\n"
        "  assign where true\n"
        "}\n"
    )


register(IntegrationKind.NAGIOS, parser=parse_nagios, snippet=nagios_snippet)
