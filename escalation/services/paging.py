"""Paging people about an incident (§4.2 step 1, §5.1): who is paged, at which address on which
channel, with which message. The people are :mod:`escalation.services.recipients`; the signed
one-click acknowledge link each message carries is :mod:`escalation.services.ack_links`.

Notifications are written only through :func:`pages_write` (one INSERT for a page, or for
all the pages of an escalation sweep batch), in the caller's transaction, so a page exists
exactly when the event that caused it commits. Every page has a deterministic idempotency
key, so repeating the cause (a retried request, a second receiver call, a concurrent sweep)
never writes a second row.

Who is paged when an incident is logged or its severity rises: the incident manager, technical
lead and communications lead. For each role, the user assigned on the incident (reached
through the ``Contact`` linked to that user, or else the user's own email address), or, when
nobody is assigned, the role's primary contact. The core assigns the roles given to
``incident_create`` *after* announcing the creation, so at that moment the primary contacts are
paged; each role assignment that follows pages the assignee too (unless that is the same
person). A page cannot be taken back once written, so the primary contact of a role assigned
at creation hears about the incident as well; the on-call contact knowing is harmless, the
assignee not knowing is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string, select_template
from django.utils import timezone

from incidents.models import (
    Channel,
    EscalationContact,
    Incident,
    Kind,
    ResponseRole,
    Source,
)
from incidents.services.common import timeline_record
from incidents.timeformat import user_zones

from ..models import Notification
from .ack_links import ack_link_make
from .outbox import OutboxMessage, notification_enqueue_groups, severity_queue
from .recipients import (
    BROADCAST_CHANNELS,
    BROADCAST_RECIPIENT,
    PAGED_ROLES,
    Recipient,
    recipient_for_contact,
    recipient_for_user,
    response_team,
)

__all__ = [
    "PagePlan",
    "PageResult",
    "format_elapsed",
    "incident_context",
    "incident_page_assignee",
    "incident_page_security",
    "incident_page_team",
    "pages_write",
    "recipients_notify",
    "recipients_plan",
]

# Channels whose message can carry a link a person can open: in the text (email, SMS) or as a
# button (Slack). The broadcast channels (Teams, the webhook) reach a place, not a person: no one
# for a link to act as, and anyone who reads it there could use it.
LINK_CHANNELS = (Channel.EMAIL, Channel.SLACK, Channel.SMS)
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


_NO_REASON = "no address"
_MISSING = {
    Channel.EMAIL: "no email address",
    Channel.PHONE: "no phone number",
    Channel.SMS: "no phone number",
    Channel.SLACK: "no Slack handle",
}


# --- rendering and sending -------------------------------------------------------------------


def format_elapsed(value: timedelta) -> str:
    """``1 h 30 min`` style, as people say it on a bridge call."""
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    if minutes or not parts:
        parts.append(f"{minutes} min")
    return " ".join(parts)


def incident_context(incident: Incident) -> dict[str, Any]:
    severity = incident.severity
    return {
        "number": incident.number,
        "title": incident.title,
        "summary": incident.summary,
        "severity": severity.level,
        "severity_name": severity.name,
        "status": incident.get_status_display(),
        "services": ", ".join(s.name for s in incident.services.all()) or "none recorded",
        "detected_at": timezone.localtime(incident.detected_at),
        "response_due_at": timezone.localtime(incident.response_due_at),
        "admin_url": settings.VIGIL_BASE_URL + incident.get_absolute_url(),
        "acknowledged": incident.acknowledged_at is not None,
    }


def _render(kind: str, channel: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, body, template name) from ``templates/escalation/<kind>/``."""
    body_template = select_template(
        [f"escalation/{kind}/{channel}.txt", f"escalation/{kind}/default.txt"]
    )
    subject = render_to_string(f"escalation/{kind}/subject.txt", context)
    body = _BLANK_LINES.sub("\n\n", body_template.render(context)).strip()
    return " ".join(subject.split()), body + "\n", body_template.template.name


@dataclass
class PageResult:
    """What a page did: rows written now, rows that already existed, and skipped channels."""

    sent: list[Notification] = field(default_factory=list)
    # The idempotency keys of the rows that already existed (nothing was written for them).
    existing: list[str] = field(default_factory=list)
    skipped: list[tuple[Recipient, str, str]] = field(default_factory=list)
    # (recipient, channel) of every row written now; recipient None for a broadcast channel.
    reached: list[tuple[Recipient | None, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.sent)

    def reached_text(self) -> str:
        """``Incident Manager Ann by Phone call, Email; Teams`` for the rows written now."""
        people: dict[str, tuple[Recipient, list[str]]] = {}
        places: list[str] = []
        for recipient, channel in self.reached:
            if recipient is None:
                places.append(Channel(channel).label)
            else:
                people.setdefault(recipient.key, (recipient, []))[1].append(channel)
        parts = [f"{r.label} by {_channel_list(chs)}" for r, chs in people.values()] + places
        return "; ".join(parts)

    def skipped_text(self) -> str:
        return "; ".join(
            f"{Channel(channel).label} for {recipient.name} ({why})"
            for recipient, channel, why in self.skipped
        )


@dataclass
class PagePlan:
    """A page rendered but not yet written: its messages, the queue of their batch task, and
    its result so far (skipped channels; ``reached`` filled in by :func:`pages_write`)."""

    messages: list[OutboxMessage]
    queue: str
    result: PageResult
    reached: list[tuple[Recipient | None, str]] = field(default_factory=list)


def recipients_notify(
    *,
    incident: Incident,
    recipients: list[Recipient],
    channels: list[str],
    kind: str,
    key_prefix: str,
    reason: str,
    extra_context: dict[str, Any] | None = None,
    base_context: dict[str, Any] | None = None,
) -> PageResult:
    """Write one notification per (recipient, channel) in the current transaction.

    Idempotency key ``<key_prefix>:<recipient key>:<channel>`` (teams and webhook reach a
    place, not a person: one row per page, key ``<key_prefix>:<channel>``). A channel the
    recipient has no address for is skipped and reported in the result. Keys that already
    have a row are listed in ``existing`` and not written again. ``base_context``
    (from :func:`incident_context`) saves re-reading the incident when paging several times.
    :func:`recipients_plan` and :func:`pages_write` are its two halves, for writing many pages
    at once.
    """
    plan = recipients_plan(
        incident=incident,
        recipients=recipients,
        channels=channels,
        kind=kind,
        key_prefix=key_prefix,
        reason=reason,
        extra_context=extra_context,
        base_context=base_context,
    )
    pages_write([plan])
    return plan.result


def recipients_plan(
    *,
    incident: Incident,
    recipients: list[Recipient],
    channels: list[str],
    kind: str,
    key_prefix: str,
    reason: str,
    extra_context: dict[str, Any] | None = None,
    base_context: dict[str, Any] | None = None,
    zones: dict[int, Any] | None = None,
) -> PagePlan:
    """Render the messages of :func:`recipients_notify` without writing them. ``zones``, if
    given, is a cache of recipients' time zones shared by the pages of one batch."""
    planned: list[tuple[str, Recipient | None, str, str]] = []
    result = PageResult()
    for channel in channels:
        if channel in BROADCAST_CHANNELS:
            if recipients:
                planned.append((f"{key_prefix}:{channel}", None, channel, BROADCAST_RECIPIENT))
            continue
        for recipient in recipients:
            address = recipient.address(channel)
            if not address:
                result.skipped.append((recipient, channel, _MISSING.get(channel, _NO_REASON)))
                continue
            planned.append((f"{key_prefix}:{recipient.key}:{channel}", recipient, channel, address))
    base = dict(base_context) if base_context is not None else incident_context(incident)
    base.update(extra_context or {})
    # Each person reads the times in their own zone (their Vigil preference), a channel in the
    # default zone.
    users = {r.user_id for _, r, _, _ in planned if r is not None and r.user_id}
    if zones is None:
        zones = user_zones(users)
    elif users - zones.keys():
        zones.update(user_zones(users - zones.keys()))
    messages: list[OutboxMessage] = []
    reached: list[tuple[Recipient | None, str]] = []
    for key, recipient, channel, address in planned:
        context = {**base, "channel": channel, "recipient": recipient, "reason": reason}
        stored: dict[str, Any] = {"kind": kind, "incident": incident.number}
        stored["severity"] = base["severity"]
        if recipient is not None and recipient.user_id and recipient.role_keys:
            # Who was paged for which response roles: acknowledging in Vigil afterwards takes
            # an empty one (paged_roles_claim_after_ack).
            stored["user"] = recipient.user_id
            stored["roles"] = list(recipient.role_keys)
        ack_url = ""
        if recipient is not None and channel in LINK_CHANNELS and not base["acknowledged"]:
            link = ack_link_make(incident=incident, recipient=recipient, channel=channel)
            context["ack_url"] = ack_url = link.url
            stored["ack_nonce"] = link.nonce
        zone = zones.get(recipient.user_id) if recipient is not None else None
        with timezone.override(zone or timezone.get_default_timezone()):
            subject, body, template = _render(kind, channel, context)
        reached.append((recipient, channel))
        messages.append(
            OutboxMessage(
                incident=incident,
                channel=channel,
                recipient=address,
                subject=subject,
                body=body,
                template=template,
                reason=reason,
                idempotency_key=key,
                # Checked when written: a contact deleted since the snapshot is left out.
                contact_id=recipient.contact_id if recipient else None,
                context=stored,
                ack_url=ack_url,
            )
        )
    return PagePlan(
        messages=messages, queue=severity_queue(base["severity"]), result=result, reached=reached
    )


def pages_write(plans: list[PagePlan]) -> None:
    """Write the messages of ``plans`` in the current transaction, with one INSERT for all of
    them (a key that already has a row is skipped) and, after commit, one broker message per
    page: the rows of a Sev 1-2 incident on the urgent queue, marked urgent for their retries.
    Fills in each plan's result: the rows written now (``sent``, by id: the timeline entry
    names them), those that existed already (``existing``) and who was reached."""
    plans = [plan for plan in plans if plan.messages]
    if not plans:
        return
    written = notification_enqueue_groups([(plan.messages, plan.queue) for plan in plans])
    for plan, new in zip(plans, written, strict=True):
        result = plan.result
        # A repeat of the page (or part of it): only the rows written now were reached.
        keys = dict.fromkeys(m.idempotency_key for m in plan.messages)
        result.existing = [key for key in keys if key not in new]
        result.reached = [
            reached
            for reached, m in zip(plan.reached, plan.messages, strict=True)
            if m.idempotency_key in new
        ]
        result.sent = [Notification(pk=pk) for pk in sorted(new.values())]


def _channel_list(channels: Iterable[str]) -> str:
    return ", ".join(Channel(c).label for c in channels)


def _record_page(
    *, incident: Incident, result: PageResult, message: str, data: dict[str, Any]
) -> None:
    if not result.sent and not result.skipped:
        return
    if result.skipped:
        message += f" Not reachable: {result.skipped_text()}."
    timeline_record(
        incident=incident,
        kind=Kind.NOTIFICATION,
        source=Source.SYSTEM,
        actor=None,
        message=message,
        data={
            **data,
            "notifications": [n.pk for n in result.sent],
            "skipped": [
                {"recipient": r.name, "channel": c, "why": why} for r, c, why in result.skipped
            ],
        },
    )


def incident_page_team(*, incident: Incident, reason: str = "logged") -> PageResult:
    """Page the response team (incident manager, technical lead, communications lead) on
    every channel of the incident's current severity (§5.1), in the current transaction.

    ``reason`` is ``logged`` (§4.2 step 1) or ``raised`` (severity rose). Idempotent per
    severity: the key ``initial:<incident>:sev<level>:<person>:<channel>`` means the team is
    paged once for each severity the incident reaches; a repeat writes nothing. A drop in
    severity is not a reason to page (callers do not call this for one). Writes one timeline
    entry listing who was paged and which channels were skipped for want of an address.
    """
    severity = incident.severity
    channels = list(severity.notification_channels)
    recipients, nobody = response_team(incident)
    text = (
        f"Sev {severity.level} incident logged"
        if reason == "logged"
        else f"Severity raised to Sev {severity.level}"
    )
    result = recipients_notify(
        incident=incident,
        recipients=recipients,
        channels=channels,
        kind="page",
        key_prefix=f"initial:{incident.pk}:sev{severity.level}",
        reason=text,
        extra_context={"page_reason": reason},
    )
    message = f"{text}: paged {result.reached_text() or 'nobody'}."
    if nobody:
        message += f" No one to page for: {', '.join(nobody)}."
    _record_page(
        incident=incident,
        result=result,
        message=message,
        data={"page": reason, "severity": severity.level, "channels": channels},
    )
    return result


def incident_page_assignee(*, incident: Incident, role_key: str, user: Any) -> PageResult:
    """Page a user just assigned one of the paged roles on an active incident, on the current
    severity's channels. Uses the same keys as :func:`incident_page_team`, so someone already
    paged at this severity (the primary contact assigning themselves) gets nothing new."""
    result = PageResult()
    if role_key not in PAGED_ROLES or user is None or not incident.is_active:
        return result
    role = ResponseRole.objects.get(key=role_key)
    recipient = recipient_for_user(user, role=role.name, role_key=role.key)
    severity = incident.severity
    channels = list(severity.notification_channels)
    text = f"Assigned {role.name} on a Sev {severity.level} incident"
    result = recipients_notify(
        incident=incident,
        recipients=[recipient],
        channels=channels,
        kind="page",
        key_prefix=f"initial:{incident.pk}:sev{severity.level}",
        reason=text,
        extra_context={"page_reason": "assigned", "role": role.name},
    )
    _record_page(
        incident=incident,
        result=result,
        message=f"{text}: paged {result.reached_text() or 'nobody'}.",
        data={"page": "assigned", "role": role_key, "severity": severity.level},
    )
    return result


SECURITY_LEVEL = "security_team"


def incident_page_security(*, incident: Incident) -> PageResult:
    """Notify the security team (the ``security_team`` escalation contact) of an incident an
    alert rule marked "security team alert" (§7.2), on the channels of its severity, in the
    current transaction. Idempotent: keys ``security:<incident>:<person>:<channel>``. With
    no security contact set, nobody is notified and the timeline says so."""
    level = EscalationContact.objects.select_related("contact").filter(key=SECURITY_LEVEL).first()
    severity = incident.severity
    text = f"Security team alert on a Sev {severity.level} incident"
    if level is None or level.contact is None:
        timeline_record(
            incident=incident,
            kind=Kind.NOTIFICATION,
            source=Source.SYSTEM,
            actor=None,
            message=f"{text}: no security team contact is set, nobody was notified.",
            data={"page": "security", "severity": severity.level},
        )
        return PageResult()
    channels = list(severity.notification_channels)
    result = recipients_notify(
        incident=incident,
        recipients=[recipient_for_contact(level.contact, role=level.name)],
        channels=channels,
        kind="page",
        key_prefix=f"security:{incident.pk}",
        reason=text,
        extra_context={"page_reason": "security"},
    )
    _record_page(
        incident=incident,
        result=result,
        message=f"{text}: notified {result.reached_text() or 'nobody'}.",
        data={"page": "security", "severity": severity.level, "channels": channels},
    )
    return result
