"""The links Vigil mails to subscribers and customer contacts: confirm a subscription, manage
it, unsubscribe (one click, RFC 8058), and a customer contact's opt-out.

Each link carries a token signed with Django's ``SECRET_KEY`` (``django.core.signing``, a salt
per action) naming the row, the action and the row's ``token_version``. Confirming and
unsubscribing increment the version, so a link works once: a reused, tampered or (for
confirmation) expired link is refused by :func:`link_open` with :class:`LinkInvalid`, and
changes nothing. Manage and unsubscribe links do not expire — they must still work from an
email read months later — but stop working once the subscription they belong to has moved on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.core import signing
from django.urls import reverse

from ..models import CustomerContact, Subscriber

Action = Literal["confirm", "manage", "unsubscribe", "contact-optout"]
ACTIONS: tuple[str, ...] = ("confirm", "manage", "unsubscribe", "contact-optout")
SALT = "vigil.communications.link."

__all__ = [
    "ACTIONS",
    "LinkInvalid",
    "OpenedLink",
    "contact_optout_url",
    "link_open",
    "link_token",
    "link_url",
]


class LinkInvalid(Exception):
    """A link that cannot be used: ``reason`` is ``expired``, ``used`` or ``invalid``. A used
    link names the row it was for (``row``), so a page can say "you are already unsubscribed"
    and an RFC 8058 one-click repeated by the mail provider can be answered as done."""

    def __init__(self, reason: str, *, row: Subscriber | CustomerContact | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.row = row


@dataclass(frozen=True)
class OpenedLink:
    action: str
    subscriber: Subscriber | None = None
    contact: CustomerContact | None = None


def link_token(row: Subscriber | CustomerContact, action: Action) -> str:
    if action not in ACTIONS:
        raise ValueError(f"Unknown link action {action!r}.")
    if (action == "contact-optout") != isinstance(row, CustomerContact):
        raise ValueError(f"A {action} link is not for a {type(row).__name__}.")
    return signing.dumps({"i": row.pk, "v": row.token_version}, salt=SALT + action, compress=True)


def link_url(subscriber: Subscriber, action: Action) -> str:
    """The absolute URL of a subscriber's ``confirm``, ``manage`` or ``unsubscribe`` link."""
    path = reverse(f"status:subscription-{action}", args=[link_token(subscriber, action)])
    return f"{settings.VIGIL_BASE_URL.rstrip('/')}{path}"


def contact_optout_url(contact: CustomerContact) -> str:
    """The absolute URL of a customer contact's one-click opt-out from incident email."""
    path = reverse(
        "status:subscription-contact-optout", args=[link_token(contact, "contact-optout")]
    )
    return f"{settings.VIGIL_BASE_URL.rstrip('/')}{path}"


def link_open(token: str, action: Action, *, max_age: timedelta | None = None) -> OpenedLink:
    """The row a link is for, or :class:`LinkInvalid`. Does not change anything: the caller
    acts, under a row lock, and increments the version where the action is single-use."""
    if action not in ACTIONS:
        raise LinkInvalid("invalid")
    try:
        data = signing.loads(
            token,
            salt=SALT + action,
            max_age=max_age.total_seconds() if max_age is not None else None,
        )
    except signing.SignatureExpired as exc:
        raise LinkInvalid("expired") from exc
    except signing.BadSignature as exc:
        raise LinkInvalid("invalid") from exc
    if not isinstance(data, dict) or not isinstance(data.get("i"), int):
        raise LinkInvalid("invalid")
    model = CustomerContact if action == "contact-optout" else Subscriber
    row = model.objects.filter(pk=data["i"]).first()
    if row is None:
        raise LinkInvalid("invalid")
    if row.token_version != data.get("v"):
        raise LinkInvalid("used", row=row)
    if isinstance(row, CustomerContact):
        return OpenedLink(action=action, contact=row)
    return OpenedLink(action=action, subscriber=row)
