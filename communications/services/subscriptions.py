"""Status-page subscriptions: the subscribing side (double opt-in, manage, unsubscribe, a
customer contact's opt-out). Webhook subscribers registered by staff, removing subscribers and
the suppression list are in :mod:`.subscribers_staff`.

**Subscribing by email** (:func:`subscription_request`) answers the same whatever the address
is — new, waiting for confirmation, subscribed, unsubscribed or suppressed — so the form cannot
be used to learn who follows the page. What happens behind that one answer:

* new, pending or unsubscribed: the request's preferences are kept on the (pending) row and a
  confirmation email is sent, its link valid for the policy's ``confirmation_link_hours``;
* already subscribed: the preferences are left alone (only the manage link changes them) and an
  "already subscribed" email with the manage link is sent — the owner of the mailbox can always
  get back to their settings by subscribing again;
* suppressed (a hard bounce, a complaint, staff): nothing is stored and nothing is sent.

At most one subscription email goes to an address per ``VIGIL_SUBSCRIBE_RESEND_MINUTES``
(``confirmation_sent_at`` is the time of the last one); requests inside that time change the
pending preferences and send nothing. Requests are counted per client address
(``VIGIL_SUBSCRIBE_IP_RATE``, every request, valid or not) and per email address
(``VIGIL_SUBSCRIBE_ADDRESS_RATE``); a request over either limit is refused
(:class:`SubscribeRateLimited`) before anything is stored.

**Links** (``.links``): confirming, unsubscribing and a contact's opt-out each increment the
row's ``token_version`` under a row lock, so each of their links works once; a link refused by
``link_open`` changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from escalation.outbox import (
    notification_enqueue,
)
from incidents.errors import InvalidInput, VigilError
from incidents.models import MessageChannel
from incidents.ratelimit import rate_limit_hit, rate_parse
from incidents.services.common import audited_save

from ..models import (
    Component,
    CustomerContact,
    StatusPageSettings,
    Subscriber,
    SubscriberKind,
    SubscriberState,
    Suppression,
)
from .links import LinkInvalid, OpenedLink, link_open, link_url
from .policy import communication_policy_get

logger = logging.getLogger(__name__)

__all__ = [
    "EMAIL_MAX",
    "LinkInvalid",
    "SubscribeRateLimited",
    "Subscription",
    "confirm_max_age",
    "contact_opt_out",
    "email_address_clean",
    "public_components",
    "subscription_confirm",
    "subscription_page_links",
    "subscription_preferences_set",
    "subscription_request",
    "subscription_unsubscribe",
]

EMAIL_MAX = 254
LOCAL_PART_MAX = 64
COMPONENTS_MAX = 200


class SubscribeRateLimited(VigilError):
    """Too many subscribe requests from one client address or for one email address."""

    def __init__(self, *, retry_after: int | None) -> None:
        self.retry_after = retry_after or 60
        super().__init__("Too many subscription requests. Please try again later.")


@dataclass(frozen=True)
class Subscription:
    """What a request asked for: every component (``components`` empty) or the chosen ones,
    and maintenance notices or not."""

    all_components: bool
    components: tuple[Component, ...]
    maintenance_notices: bool


# --- input -------------------------------------------------------------------------------------


def email_address_clean(value: Any, *, field: str = "email") -> str:
    """``value`` as an email address (surrounding spaces removed, case kept), or InvalidInput:
    empty, longer than 254 characters (64 before the @), control characters or spaces, not an
    address by Django's validator, or a domain without a dot (``user@localhost``)."""
    if not isinstance(value, str):
        raise InvalidInput({field: "Enter an email address."})
    email = value.strip()
    if not email:
        raise InvalidInput({field: "Enter an email address."})
    if len(email) > EMAIL_MAX:
        raise InvalidInput({field: f"An email address has at most {EMAIL_MAX} characters."})
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in email):
        raise InvalidInput({field: "Enter a valid email address."})
    local, _, domain = email.rpartition("@")
    if len(local) > LOCAL_PART_MAX or "." not in domain or domain.endswith("."):
        raise InvalidInput({field: "Enter a valid email address."})
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidInput({field: "Enter a valid email address."}) from exc
    return email


def public_components():
    """The components a subscriber may choose: those shown on the status page."""
    return Component.objects.filter(showcase=True).select_related("service", "group")


def subscription_clean(
    *, all_components: bool, components: Any, maintenance_notices: Any
) -> Subscription:
    if all_components:
        return Subscription(True, (), bool(maintenance_notices))
    if not isinstance(components, list | tuple) or any(
        not isinstance(code, str) for code in components
    ):
        raise InvalidInput({"components": "A list of component ids."})
    codes = list(dict.fromkeys(code.strip() for code in components))
    if not codes:
        raise InvalidInput({"components": "Choose at least one component, or all of them."})
    if len(codes) > COMPONENTS_MAX:
        raise InvalidInput({"components": f"At most {COMPONENTS_MAX} components."})
    found = {c.code: c for c in public_components().filter(service__slug__in=codes)}
    unknown = [code for code in codes if code not in found]
    if unknown:
        shown = ", ".join(code[:60] for code in unknown[:5])
        raise InvalidInput({"components": f"Unknown components: {shown}."})
    return Subscription(False, tuple(found[code] for code in codes), bool(maintenance_notices))


def subscription_apply(subscriber: Subscriber, subscription: Subscription) -> None:
    subscriber.all_components = subscription.all_components
    subscriber.maintenance_notices = subscription.maintenance_notices


def subscription_apply_components(subscriber: Subscriber, subscription: Subscription) -> None:
    subscriber.components.set(subscription.components)


# --- rate limits -------------------------------------------------------------------------------


def _rate(name: str, default: str):
    try:
        return rate_parse(getattr(settings, name, default))
    except ValueError:
        logger.error("%s is not a rate (N/second|minute|hour|day); no limit applied.", name)
        return None


def _hit(key: str, name: str, default: str) -> None:
    rate = _rate(name, default)
    if rate is None:
        return
    decision = rate_limit_hit(key=key, rate=rate)
    if not decision.allowed:
        raise SubscribeRateLimited(retry_after=decision.retry_after)


def _resend_after() -> timedelta:
    return timedelta(minutes=float(getattr(settings, "VIGIL_SUBSCRIBE_RESEND_MINUTES", 15)))


# --- emails ------------------------------------------------------------------------------------


def subscription_page_links() -> dict[str, str]:
    """The status page's name, its address and the subscribe form's (absolute)."""
    page = StatusPageSettings.objects.first()
    name = page.name if page else "Service status"
    base = settings.VIGIL_BASE_URL.rstrip("/")
    url = (page.url if page and page.url else "") or f"{base}{reverse('status:index')}"
    return {"name": name, "url": url, "subscribe_url": f"{base}{reverse('status:subscribe')}"}


def confirm_max_age() -> timedelta:
    return timedelta(hours=communication_policy_get().confirmation_link_hours)


def _mail(subscriber: Subscriber, *, kind: str) -> None:
    """Queue the subscription email ``kind`` (``confirm`` or ``already``) to ``subscriber``;
    its key names the row, its link version and the send time, so one send is one message."""
    page = subscription_page_links()
    context: dict[str, Any] = {"page": page, "subscriber": subscriber}
    if kind == "confirm":
        context["confirm_url"] = link_url(subscriber, "confirm")
        context["hours"] = communication_policy_get().confirmation_link_hours
        subject = f"Confirm your subscription to {page['name']}"
    else:
        context["manage_url"] = link_url(subscriber, "manage")
        context["unsubscribe_url"] = link_url(subscriber, "unsubscribe")
        subject = f"You are already subscribed to {page['name']}"
    sent = subscriber.confirmation_sent_at
    notification_enqueue(
        incident=None,
        channel=MessageChannel.EMAIL,
        recipient=subscriber.email,
        subject=subject,
        body=render_to_string(f"status/subscribe/email_{kind}.txt", context),
        template=f"subscription-{kind}",
        reason="Status page subscription request",
        idempotency_key=(
            f"subscription:{subscriber.pk}:{kind}:v{subscriber.token_version}:"
            f"{int(sent.timestamp() * 1000)}"
        ),
        context={
            "html": render_to_string(f"status/subscribe/email_{kind}.html", context),
            "headers": {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
        },
    )


# --- subscribing -------------------------------------------------------------------------------


def _suppressed(email: str) -> bool:
    return Suppression.objects.filter(email__iexact=email).exists()


def _locked_email_subscriber(email: str) -> Subscriber | None:
    return (
        Subscriber.objects.select_for_update()
        .filter(kind=SubscriberKind.EMAIL, email__iexact=email)
        .first()
    )


@transaction.atomic
def subscription_request(
    *,
    email: Any,
    all_components: bool = True,
    components: Any = (),
    maintenance_notices: Any = True,
    client: str | None = None,
) -> None:
    """A public request to subscribe ``email`` (see the module docstring for what happens).

    Raises :class:`SubscribeRateLimited` (over a limit; counted before anything else, the
    client's on every request) or InvalidInput (a bad address, unknown or no components);
    either way nothing is stored or sent. Returns nothing: the caller's answer must not depend
    on what the address was."""
    _hit(f"subscribe:ip:{client or 'unknown'}", "VIGIL_SUBSCRIBE_IP_RATE", "20/hour")
    address = email_address_clean(email)
    subscription = subscription_clean(
        all_components=all_components,
        components=list(components) if isinstance(components, list | tuple) else components,
        maintenance_notices=maintenance_notices,
    )
    _hit(f"subscribe:address:{address.lower()}", "VIGIL_SUBSCRIBE_ADDRESS_RATE", "10/day")

    if _suppressed(address):
        return
    now = timezone.now()
    subscriber = _locked_email_subscriber(address)
    if subscriber is None:
        subscriber = Subscriber(kind=SubscriberKind.EMAIL, email=address)
        subscription_apply(subscriber, subscription)
        try:
            with transaction.atomic():
                audited_save(subscriber, actor=None, reason="subscribe request")
        except IntegrityError:
            # A concurrent request for the same address created it first: go on with that row.
            subscriber = _locked_email_subscriber(address)
            if subscriber is None:
                raise
        else:
            subscription_apply_components(subscriber, subscription)
    elif subscriber.state != SubscriberState.ACTIVE:
        # Pending or unsubscribed: the latest request's choice waits for confirmation.
        subscriber.state = SubscriberState.PENDING
        subscription_apply(subscriber, subscription)
        audited_save(subscriber, actor=None, reason="subscribe request")
        subscription_apply_components(subscriber, subscription)

    last = subscriber.confirmation_sent_at
    if last is not None and now - last < _resend_after():
        return
    subscriber.confirmation_sent_at = now
    audited_save(subscriber, actor=None, reason="subscription email sent")
    _mail(subscriber, kind="already" if subscriber.state == SubscriberState.ACTIVE else "confirm")


def _locked_by_link(opened: OpenedLink) -> Subscriber:
    """The link's subscriber, locked; a concurrent use of the same link (which changed the
    version after ``link_open`` read it) makes it a used link."""
    read = opened.subscriber
    locked = Subscriber.objects.select_for_update().get(pk=read.pk)
    if locked.token_version != read.token_version:
        raise LinkInvalid("used", row=locked)
    return locked


@transaction.atomic
def subscription_confirm(*, token: str) -> Subscriber:
    """Confirm a pending subscription by its confirmation link: active, with the preferences of
    the request, and the link used up (``token_version`` + 1). Raises LinkInvalid (tampered,
    expired after the policy's hours, used) and changes nothing then."""
    opened = link_open(token, "confirm", max_age=confirm_max_age())
    subscriber = _locked_by_link(opened)
    if subscriber.state != SubscriberState.PENDING:
        raise LinkInvalid("used", row=subscriber)
    subscriber.state = SubscriberState.ACTIVE
    subscriber.confirmed_at = timezone.now()
    subscriber.token_version += 1
    audited_save(subscriber, actor=None, reason="confirmed by link")
    return subscriber


def subscription_open(*, token: str, action: str) -> Subscriber:
    """The subscriber of a ``confirm``, ``manage`` or ``unsubscribe`` link, changing nothing
    (the pages shown on GET). Raises LinkInvalid."""
    max_age = confirm_max_age() if action == "confirm" else None
    opened = link_open(token, action, max_age=max_age)  # type: ignore[arg-type]
    subscriber = opened.subscriber
    if action == "confirm" and subscriber.state != SubscriberState.PENDING:
        raise LinkInvalid("used", row=subscriber)
    if action == "manage" and subscriber.state != SubscriberState.ACTIVE:
        raise LinkInvalid("used", row=subscriber)
    return subscriber


@transaction.atomic
def subscription_preferences_set(
    *, token: str, all_components: bool, components: Any = (), maintenance_notices: Any = True
) -> Subscriber:
    """Change an active subscription's components and maintenance choice by its manage link
    (which keeps working: manage links are in every email). Raises LinkInvalid or
    InvalidInput; changes nothing then."""
    opened = link_open(token, "manage")
    subscription = subscription_clean(
        all_components=all_components,
        components=list(components) if isinstance(components, list | tuple) else components,
        maintenance_notices=maintenance_notices,
    )
    subscriber = _locked_by_link(opened)
    if subscriber.state != SubscriberState.ACTIVE:
        raise LinkInvalid("used", row=subscriber)
    subscription_apply(subscriber, subscription)
    audited_save(subscriber, actor=None, reason="preferences changed by link")
    subscription_apply_components(subscriber, subscription)
    return subscriber


@transaction.atomic
def subscription_unsubscribe(*, token: str, action: str = "unsubscribe") -> Subscriber:
    """Unsubscribe by an ``unsubscribe`` link (or the manage page's button, ``manage``): no
    more email, and every link mailed so far stops working (``token_version`` + 1). Raises
    LinkInvalid (a used link names its row, so a caller can tell "already unsubscribed")."""
    if action not in ("unsubscribe", "manage"):
        raise LinkInvalid("invalid")
    opened = link_open(token, action)  # type: ignore[arg-type]
    subscriber = _locked_by_link(opened)
    if subscriber.state == SubscriberState.UNSUBSCRIBED:
        raise LinkInvalid("used", row=subscriber)
    subscriber.state = SubscriberState.UNSUBSCRIBED
    subscriber.unsubscribed_at = timezone.now()
    subscriber.token_version += 1
    audited_save(subscriber, actor=None, reason=f"unsubscribed by {action} link")
    return subscriber


def contact_open(*, token: str) -> CustomerContact:
    """The customer contact of an opt-out link, changing nothing. Raises LinkInvalid."""
    contact = link_open(token, "contact-optout").contact
    if not contact.incident_email:
        raise LinkInvalid("used", row=contact)
    return contact


@transaction.atomic
def contact_opt_out(*, token: str) -> CustomerContact:
    """A customer contact's opt-out from incident email by the link in one: no more incident
    email (``incident_email`` off), the link used up. Raises LinkInvalid."""
    opened = link_open(token, "contact-optout")
    contact = CustomerContact.objects.select_for_update().get(pk=opened.contact.pk)
    if contact.token_version != opened.contact.token_version or not contact.incident_email:
        raise LinkInvalid("used", row=contact)
    contact.incident_email = False
    contact.opted_out_at = timezone.now()
    contact.token_version += 1
    audited_save(contact, actor=None, reason="opted out by link")
    return contact
