"""Paging people about an incident (§4.2 step 1, §5.1): who is paged, at which address on which
channel, with which message, and the signed one-click acknowledge link each message carries.

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
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string, select_template
from django.urls import reverse
from django.utils import timezone

from incidents.events import default_queue, urgent_queue
from incidents.models import (
    Channel,
    Contact,
    EscalationContact,
    Incident,
    Kind,
    ResponseRole,
    Source,
    Status,
    channel_address,
)
from incidents.services import incident_acknowledge, incident_role_claim
from incidents.services.common import timeline_record
from incidents.services.policy import incident_policy_get
from incidents.timeformat import user_zones, when

from ..models import AckLinkUse, AckOutcome, Notification
from .outbox import URGENT_SEVERITY, OutboxMessage, notification_enqueue_groups

__all__ = [
    "PAGED_ROLES",
    "AckLink",
    "AckLinkError",
    "AckLinkResult",
    "PagePlan",
    "PageResult",
    "Recipient",
    "ack_link_make",
    "ack_link_read",
    "ack_link_use",
    "format_elapsed",
    "incident_context",
    "incident_page_assignee",
    "incident_page_security",
    "incident_page_team",
    "paged_roles_claim",
    "paged_roles_claim_after_ack",
    "pages_write",
    "recipient_for_contact",
    "recipient_for_user",
    "recipients_merge",
    "recipients_notify",
    "recipients_plan",
]

PAGED_ROLES = (
    ResponseRole.INCIDENT_MANAGER,
    ResponseRole.TECHNICAL_LEAD,
    ResponseRole.COMMUNICATIONS_LEAD,
)
# Channels that reach a place (a Teams channel, a receiving system) rather than a person: one
# message per page, to the destination configured under this name.
BROADCAST_CHANNELS = (Channel.TEAMS, Channel.WEBHOOK)
BROADCAST_RECIPIENT = "default"
# Channels whose message can carry a link a person can open: in the text (email, SMS) or as a
# button (Slack). The broadcast channels (Teams, the webhook) reach a place, not a person: no one
# for a link to act as, and anyone who reads it there could use it.
LINK_CHANNELS = (Channel.EMAIL, Channel.SLACK, Channel.SMS)
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")

ACK_SALT = "vigil.escalation.ack-link"
DEFAULT_ACK_LINK_MAX_AGE = timedelta(hours=24)


# --- recipients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A person to page, with the addresses they can be reached at.

    ``key`` identifies the person in idempotency keys: ``c<id>`` for a Contact, ``u<id>`` for
    a user with no Contact. ``user_id`` is the login their acknowledge links act as.
    ``role_keys`` are the response roles (keys) they are paged for, carried in their
    acknowledge links: acknowledging gives them an empty one (``incident_role_claim``).
    """

    key: str
    name: str
    roles: tuple[str, ...] = ()
    role_keys: tuple[str, ...] = ()
    contact_id: int | None = None
    user_id: int | None = None
    email: str = ""
    phone: str = ""
    slack: str = ""

    def address(self, channel: str) -> str:
        """The address for ``channel``, or "" when this person cannot be reached on it."""
        if channel in BROADCAST_CHANNELS:
            return BROADCAST_RECIPIENT
        return channel_address(channel, email=self.email, phone=self.phone, slack=self.slack)

    @property
    def label(self) -> str:
        return f"{' / '.join(self.roles)} {self.name}".strip() if self.roles else self.name

    def snapshot(self) -> dict[str, Any]:
        """The recipient as stored in a policy snapshot (plain JSON)."""
        return {
            "key": self.key,
            "name": self.name,
            "contact_id": self.contact_id,
            "user_id": self.user_id,
            "email": self.email,
            "phone": self.phone,
            "slack": self.slack,
        }

    @classmethod
    def from_snapshot(
        cls, data: dict[str, Any], *, role: str = "", role_key: str = ""
    ) -> Recipient:
        return cls(
            key=data["key"],
            name=data.get("name", ""),
            roles=(role,) if role else (),
            role_keys=(role_key,) if role_key else (),
            contact_id=data.get("contact_id"),
            user_id=data.get("user_id"),
            email=data.get("email", ""),
            phone=data.get("phone", ""),
            slack=data.get("slack", ""),
        )


_NO_REASON = "no address"
_MISSING = {
    Channel.EMAIL: "no email address",
    Channel.PHONE: "no phone number",
    Channel.SMS: "no phone number",
    Channel.SLACK: "no Slack handle",
}


def recipient_for_contact(contact: Contact, *, role: str = "", role_key: str = "") -> Recipient:
    return Recipient(
        key=f"c{contact.pk}",
        name=contact.name,
        roles=(role,) if role else (),
        role_keys=(role_key,) if role_key else (),
        contact_id=contact.pk,
        user_id=contact.user_id,
        email=contact.email,
        phone=contact.phone,
        slack=contact.slack_handle,
    )


def recipient_for_user(user: Any, *, role: str = "", role_key: str = "") -> Recipient:
    """The user's Contact (their phone and Slack), or else the user with their email only."""
    contact = Contact.objects.filter(user=user).order_by("pk").first()
    if contact is not None:
        return recipient_for_contact(contact, role=role, role_key=role_key)
    return Recipient(
        key=f"u{user.pk}",
        name=user.get_full_name() or user.get_username(),
        roles=(role,) if role else (),
        role_keys=(role_key,) if role_key else (),
        user_id=user.pk,
        email=user.email or "",
    )


def recipients_merge(recipients: Iterable[Recipient]) -> list[Recipient]:
    """One entry per person, holding every role they were chosen for, in first-seen order."""
    merged: dict[str, Recipient] = {}
    for recipient in recipients:
        known = merged.get(recipient.key)
        if known is None:
            merged[recipient.key] = recipient
        else:
            roles = known.roles + tuple(r for r in recipient.roles if r not in known.roles)
            keys = known.role_keys + tuple(
                k for k in recipient.role_keys if k not in known.role_keys
            )
            merged[recipient.key] = replace(known, roles=roles, role_keys=keys)
    return list(merged.values())


def _response_team(incident: Incident) -> tuple[list[Recipient], list[str]]:
    """The people holding the paged roles now, and the roles nobody can be paged for."""
    assigned = {
        a.role.key: a.user
        for a in incident.role_assignments.select_related("role", "user").filter(
            role__key__in=PAGED_ROLES
        )
    }
    roles = ResponseRole.objects.filter(key__in=PAGED_ROLES).select_related("primary_contact")
    found: list[Recipient] = []
    nobody: list[str] = []
    for role in sorted(roles, key=lambda r: PAGED_ROLES.index(r.key)):
        user = assigned.get(role.key)
        if user is not None:
            found.append(recipient_for_user(user, role=role.name, role_key=role.key))
        elif role.primary_contact is not None:
            found.append(
                recipient_for_contact(role.primary_contact, role=role.name, role_key=role.key)
            )
        else:
            nobody.append(role.name)
    return recipients_merge(found), nobody


# --- acknowledge links -----------------------------------------------------------------------


@dataclass(frozen=True)
class AckLink:
    url: str
    nonce: str


class AckLinkError(Exception):
    """An acknowledge link that cannot be used; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def ack_link_max_age() -> timedelta:
    value = getattr(settings, "VIGIL_ACK_LINK_MAX_AGE", DEFAULT_ACK_LINK_MAX_AGE)
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def ack_link_make(
    *, incident: Incident, recipient: Recipient, channel: str, nonce: str | None = None
) -> AckLink:
    """A signed, expiring, single-use link that acknowledges ``incident`` as the recipient's
    user. Binds the incident, the contact and user, the channel and a fresh nonce (the nonce
    is what "used once" is recorded against); the signature's timestamp gives the expiry.

    The signed token is the URL's fragment (``<base>/ack/#<token>``): browsers never send a
    fragment, so the token never appears in a request line, and so in no access log of Vigil,
    a proxy or a load balancer. The page at ``/ack/`` reads it and posts it in a form body."""
    nonce = nonce or secrets.token_hex(8)
    payload = {
        "i": incident.pk,
        "c": recipient.contact_id,
        "u": recipient.user_id,
        "ch": channel,
        "n": nonce,
    }
    if recipient.role_keys:
        # The response roles this page was for: acknowledging takes an empty one.
        payload["r"] = list(recipient.role_keys)
    token = signing.dumps(payload, salt=ACK_SALT, compress=True)
    return AckLink(url=f"{settings.VIGIL_BASE_URL}{reverse('escalation:ack')}#{token}", nonce=nonce)


def ack_link_read(token: str) -> dict[str, Any]:
    """The payload of a valid, unexpired link, or :class:`AckLinkError` (400 tampered or
    malformed, 410 expired). Says nothing about whether it was used."""
    max_age = ack_link_max_age()
    try:
        payload = signing.loads(token, salt=ACK_SALT, max_age=max_age)
    except signing.SignatureExpired:
        hours = max_age.total_seconds() / 3600
        raise AckLinkError(
            f"This acknowledge link has expired (links are valid for {hours:g} hours). "
            "Open the incident in Vigil to acknowledge it.",
            status=410,
            code="expired",
        ) from None
    except signing.BadSignature:
        raise AckLinkError(
            "This acknowledge link is not valid: it may have been cut short or altered. "
            "Open the incident in Vigil to acknowledge it.",
            status=400,
            code="invalid",
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("i"), int):
        raise AckLinkError("This acknowledge link is not valid.", status=400, code="invalid")
    if not isinstance(payload.get("n"), str) or not payload["n"]:
        raise AckLinkError("This acknowledge link is not valid.", status=400, code="invalid")
    return payload


@dataclass(frozen=True)
class AckLinkResult:
    incident: Incident
    outcome: str
    actor: Any
    use: AckLinkUse
    roles: tuple[str, ...] = ()  # names of the response roles the acknowledger took


def ack_link_check(payload: dict[str, Any]) -> tuple[Incident, Any, Contact | None]:
    """Everything a link needs before it is used: its incident exists, it was not used yet,
    and it names an active Vigil user allowed to acknowledge. Raises :class:`AckLinkError`.

    A contact with no Vigil login cannot acknowledge by link: an acknowledgement names who
    took the incident on (§6.1), and Vigil does not invent an actor. The page tells them to
    log in, or to ask an administrator to link their contact to their login.
    """
    incident = Incident.objects.select_related("severity").filter(pk=payload["i"]).first()
    if incident is None:
        raise AckLinkError("This incident no longer exists.", status=404, code="not_found")
    if incident.acknowledged_at is None and incident.status != Status.OPEN:
        raise AckLinkError(
            f"{incident.number} is {incident.get_status_display().lower()}: there is nothing "
            "to acknowledge.",
            status=409,
            code="not_allowed",
        )
    used = AckLinkUse.objects.filter(nonce=payload["n"]).first()
    if used is not None:
        raise AckLinkError(
            f"This acknowledge link was already used on "
            f"{when(used.used_at)}. Each link works once.",
            status=410,
            code="used",
        )
    contact = Contact.objects.filter(pk=payload.get("c")).first() if payload.get("c") else None
    user = None
    if payload.get("u"):
        user = get_user_model().objects.filter(pk=payload["u"]).first()
    if user is None or not user.is_active:
        raise AckLinkError(
            "This link was sent to a contact with no Vigil login, so it cannot record who "
            "acknowledged. Log in to Vigil and acknowledge the incident there, or ask an "
            "administrator to link your contact to your login.",
            status=403,
            code="no_user",
        )
    if not user.has_perm("incidents.acknowledge_incident"):
        raise AckLinkError(
            f"{user.get_username()} is not allowed to acknowledge incidents. "
            "Ask the incident manager to acknowledge it.",
            status=403,
            code="forbidden",
        )
    return incident, user, contact


@transaction.atomic
def ack_link_use(*, token: str) -> AckLinkResult:
    """Acknowledge an incident through a one-click link, as the user the link was sent to.

    Preconditions: see :func:`ack_link_read` and :func:`ack_link_check`; any failure raises
    :class:`AckLinkError` and changes nothing. Side effects, in one transaction: a unique
    :class:`AckLinkUse` row (a second use, even a concurrent one, fails on it), the
    acknowledgement through ``incident_acknowledge`` (source email, with its own timeline entry
    and event) and a timeline entry naming the link. If the incident was already acknowledged
    the link is still used up and says so. Not repeatable: a link works once.
    """
    from incidents.errors import VigilError

    payload = ack_link_read(token)
    incident, user, contact = ack_link_check(payload)
    # Lock before deciding: two different links posted at once must not both record that they
    # acknowledged the incident.
    incident = (
        Incident.objects.select_for_update(of=("self",))
        .select_related("severity")
        .get(pk=incident.pk)
    )
    already = incident.acknowledged_at is not None
    try:
        with transaction.atomic():
            use = AckLinkUse.objects.create(
                nonce=payload["n"],
                incident=incident,
                contact=contact,
                user=user,
                channel=payload.get("ch") if payload.get("ch") in Channel.values else "",
                outcome=AckOutcome.ALREADY if already else AckOutcome.ACKNOWLEDGED,
            )
    except IntegrityError:
        raise AckLinkError(
            "This acknowledge link was already used. Each link works once.",
            status=410,
            code="used",
        ) from None
    roles: list[str] = []
    if not already:
        try:
            incident = incident_acknowledge(incident=incident, actor=user, source=Source.EMAIL)
        except VigilError as exc:
            raise AckLinkError(exc.message, status=409, code="not_allowed") from None
        channel = Channel(use.channel).label.lower() if use.channel else "a notification"
        timeline_record(
            incident=incident,
            kind=Kind.NOTIFICATION,
            source=Source.EMAIL,
            actor=user,
            message=(
                f"Acknowledged with the one-click link sent to "
                f"{contact.name if contact else user.get_username()} by {channel}."
            ),
            data={"ack_link": use.nonce, "contact": use.contact_id, "channel": use.channel},
        )
        roles = paged_roles_claim(incident=incident, user=user, role_keys=payload.get("r") or [])
    return AckLinkResult(
        incident=incident, outcome=use.outcome, actor=user, use=use, roles=tuple(roles)
    )


def paged_roles_claim(
    *, incident: Incident, user: Any, role_keys: Iterable[str], source: str = Source.EMAIL
) -> list[str]:
    """Give ``user``, who just acknowledged ``incident`` through a page sent for
    ``role_keys``, each of those response roles that nobody holds on it (the incident
    policy's ``acknowledger_takes_role``), through ``incident_role_claim`` (timeline entry,
    history, event). A role held, or a user who cannot hold one (a Viewer), is left as it is.
    Returns the names of the roles taken. Idempotent."""
    keys = [key for key in role_keys if isinstance(key, str) and key]
    if not keys or not incident_policy_get().acknowledger_takes_role:
        return []
    taken = []
    for role in ResponseRole.objects.filter(key__in=keys):
        assignment = incident_role_claim(
            incident=incident,
            role=role,
            user=user,
            source=source,
            why="acknowledged the page sent for this role",
        )
        if assignment is not None:
            taken.append(role.name)
    return taken


def paged_roles_claim_after_ack(*, incident: Incident, user: Any, source: str) -> list[str]:
    """``user`` acknowledged ``incident`` in Vigil (the admin's button, the API) after being
    paged for response roles on it: they take each of those roles nobody holds, as with the
    one-click link (:func:`paged_roles_claim`). The roles come from the notifications they
    were sent. Idempotent; returns the names of the roles taken."""
    keys: list[str] = []
    for roles in Notification.objects.filter(incident=incident, context__user=user.pk).values_list(
        "context__roles", flat=True
    ):
        keys.extend(key for key in roles or [] if key not in keys)
    return paged_roles_claim(incident=incident, user=user, role_keys=keys, source=source)


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
        messages=messages, queue=_page_queue(base["severity"]), result=result, reached=reached
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


def _page_queue(severity: int) -> str:
    return urgent_queue() if severity <= URGENT_SEVERITY else default_queue()


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
    recipients, nobody = _response_team(incident)
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
