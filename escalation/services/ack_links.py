"""The signed one-click acknowledge link a page carries, and what using it does: acknowledge
the incident as the user it was sent to, once, and take the response roles it was paged for
that nobody holds (the incident policy's ``acknowledger_takes_role``)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import get_script_prefix, get_urlconf, reverse

from incidents.models import Channel, Contact, Incident, Kind, ResponseRole, Source, Status
from incidents.services import incident_acknowledge, incident_role_claim
from incidents.services.common import timeline_record
from incidents.services.policy import incident_policy_get
from incidents.timeformat import when

from ..models import AckLinkUse, AckOutcome, Notification
from .recipients import Recipient

__all__ = [
    "ACK_SALT",
    "AckLink",
    "AckLinkError",
    "AckLinkResult",
    "ack_link_check",
    "ack_link_make",
    "ack_link_read",
    "ack_link_use",
    "paged_roles_claim",
    "paged_roles_claim_after_ack",
]

ACK_SALT = "vigil.escalation.ack-link"
DEFAULT_ACK_LINK_MAX_AGE = timedelta(hours=24)


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
    return AckLink(url=f"{settings.VIGIL_BASE_URL}{_ack_path()}#{token}", nonce=nonce)


# The path of the acknowledge page per URL configuration and script prefix: reversing it costs
# more than signing a link, and a page run pages many links.
_ACK_PATHS: dict[tuple[object, str, str], str] = {}


def _ack_path() -> str:
    key = (get_urlconf(), settings.ROOT_URLCONF, get_script_prefix())
    path = _ACK_PATHS.get(key)
    if path is None:
        path = _ACK_PATHS[key] = reverse("escalation:ack")
    return path


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
