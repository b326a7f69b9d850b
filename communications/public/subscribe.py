"""The status page's subscription pages: the dynamic part of the otherwise static public site
(which links here). They work without JavaScript and on a phone.

* ``status/subscribe/``: the form (CSRF-protected). Its answer is the same "check your inbox"
  page whatever the address was (see ``communications.services.subscriptions``); 400 with the
  form again for a bad address or unknown components, 429 over a rate limit — nothing stored
  either way.
* ``status/subscriptions/<action>/<token>/``: the pages of the links Vigil mails. A GET only
  shows what the link would do, with a button — mail scanners open links on their own, and a
  GET never confirms, changes or unsubscribes anything; the button POSTs. An unsubscribe or
  opt-out link also takes RFC 8058's one-click POST (body ``List-Unsubscribe=One-Click``,
  sent by the mail provider, not a browser) and answers 200. The token in the URL is the
  credential and no session is involved, so these POSTs are CSRF-exempt (there is no ambient
  authority to forge); the pages send no referrer and are never cached.
  A tampered link answers 400, an expired or used one 410, and changes nothing.

Nothing personal is shown beyond what the link's owner typed or the address the link was
mailed to (on the confirm and manage pages); no page lists other subscribers.
"""

from __future__ import annotations

import math
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from incidents.errors import InvalidInput
from incidents.services.security import client_address

from ..models import Subscriber, SubscriberState
from ..services.links import link_url
from ..services.subscriptions import (
    LinkInvalid,
    SubscribeRateLimited,
    contact_open,
    contact_opt_out,
    public_components,
    subscription_confirm,
    subscription_open,
    subscription_page_links,
    subscription_preferences_set,
    subscription_request,
    subscription_unsubscribe,
)

# Longer than any token Vigil signs; anything longer is not worth verifying.
TOKEN_MAX = 500
ONE_CLICK = "One-Click"


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    context = {"page": subscription_page_links(), **context}
    response = render(request, f"status/subscribe/{template}", context, status=status)
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _values(request: HttpRequest) -> dict[str, Any]:
    return {
        "email": request.POST.get("email", "")[:300],
        "scope": "some" if request.POST.get("scope") == "some" else "all",
        "components": request.POST.getlist("components")[:500],
        "maintenance": request.POST.get("maintenance") == "1",
    }


def _choices(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "all_components": values["scope"] != "some",
        "components": values["components"],
        "maintenance_notices": values["maintenance"],
    }


@never_cache
@csrf_protect
def subscribe(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    context: dict[str, Any] = {
        "current": "subscribe",
        "components": list(public_components()),
        "action": request.path,
    }
    if request.method != "POST":
        values = {"email": "", "scope": "all", "components": [], "maintenance": True}
        return _page(request, "form.html", {**context, "values": values, "errors": {}})
    values = _values(request)
    try:
        subscription_request(
            email=values["email"], client=client_address(request), **_choices(values)
        )
    except SubscribeRateLimited as limited:
        response = _page(
            request,
            "limited.html",
            {**context, "minutes": max(1, math.ceil(limited.retry_after / 60))},
            status=429,
        )
        response["Retry-After"] = str(limited.retry_after)
        return response
    except InvalidInput as exc:
        return _page(
            request, "form.html", {**context, "values": values, "errors": exc.errors}, status=400
        )
    return _page(request, "sent.html", {**context, "email": values["email"].strip()})


# --- link pages -------------------------------------------------------------------------------

REFUSALS = {
    "invalid": (
        400,
        "This link does not work",
        "The link is incomplete or was changed. "
        "Open it again from the email, copying the whole address.",
    ),
    "expired": (
        410,
        "This link has expired",
        "Confirmation links expire. Subscribe again to get a new one.",
    ),
    "used": (
        410,
        "This link was already used",
        "Each of these links works once, and a newer email may have replaced it.",
    ),
}


def _refused(request: HttpRequest, error: LinkInvalid, *, what: str = "") -> HttpResponse:
    status, heading, message = REFUSALS.get(error.reason, REFUSALS["invalid"])
    row = error.row
    if error.reason == "used" and isinstance(row, Subscriber):
        if row.state == SubscriberState.UNSUBSCRIBED:
            message = "This address is unsubscribed: no more updates will be sent to it."
        elif row.state == SubscriberState.ACTIVE and what == "confirm":
            heading, message = (
                "Already confirmed",
                "This subscription is already confirmed. Every update email has a link to "
                "manage it.",
            )
        elif row.state == SubscriberState.ACTIVE:
            message = (
                "This link is from an earlier subscription. Use the link in a more recent email."
            )
    elif error.reason == "used" and row is not None and not getattr(row, "incident_email", True):
        message = "This address no longer receives incident email."
    return _page(
        request,
        "link_refused.html",
        {"heading": heading, "message": message},
        status=status,
    )


def _token_ok(token: str) -> bool:
    return 0 < len(token) <= TOKEN_MAX


def _one_click(request: HttpRequest) -> bool:
    """RFC 8058: the mail provider POSTs ``List-Unsubscribe=One-Click`` to the link."""
    return request.POST.get("List-Unsubscribe") == ONE_CLICK


def _one_click_answer(text: str) -> HttpResponse:
    return HttpResponse(text + "\n", content_type="text/plain; charset=utf-8")


@csrf_exempt
@never_cache
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if not _token_ok(token):
        return _refused(request, LinkInvalid("invalid"))
    try:
        if request.method != "POST":
            subscriber = subscription_open(token=token, action="confirm")
            chosen = (
                []
                if subscriber.all_components
                else list(subscriber.components.select_related("service"))
            )
            return _page(request, "confirm.html", {"subscriber": subscriber, "chosen": chosen})
        subscriber = subscription_confirm(token=token)
    except LinkInvalid as error:
        return _refused(request, error, what="confirm")
    return _page(
        request,
        "done.html",
        {
            "heading": "You are subscribed",
            "lines": ["Thank you: your subscription is confirmed."],
            "manage_url": link_url(subscriber, "manage"),
        },
    )


def _manage_values(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "scope": "all" if subscriber.all_components else "some",
        "components": [c.code for c in subscriber.components.select_related("service")],
        "maintenance": subscriber.maintenance_notices,
    }


@csrf_exempt
@never_cache
def manage(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if not _token_ok(token):
        return _refused(request, LinkInvalid("invalid"))
    context: dict[str, Any] = {"components": list(public_components()), "errors": {}}
    try:
        if request.method != "POST":
            subscriber = subscription_open(token=token, action="manage")
            return _page(
                request,
                "manage.html",
                {**context, "subscriber": subscriber, "values": _manage_values(subscriber)},
            )
        if request.POST.get("action") == "unsubscribe":
            subscription_unsubscribe(token=token, action="manage")
            return _unsubscribed(request)
        values = _values(request)
        try:
            subscriber = subscription_preferences_set(token=token, **_choices(values))
        except InvalidInput as exc:
            subscriber = subscription_open(token=token, action="manage")
            return _page(
                request,
                "manage.html",
                {**context, "subscriber": subscriber, "values": values, "errors": exc.errors},
                status=400,
            )
    except LinkInvalid as error:
        return _refused(request, error)
    return _page(
        request,
        "manage.html",
        {**context, "subscriber": subscriber, "values": _manage_values(subscriber), "saved": True},
    )


def _unsubscribed(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        "done.html",
        {
            "heading": "You are unsubscribed",
            "lines": [
                "No more updates will be sent to this address.",
                "Changed your mind? You can subscribe again at any time.",
            ],
        },
    )


@csrf_exempt
@never_cache
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    one_click = request.method == "POST" and _one_click(request)
    if not _token_ok(token):
        return _refused(request, LinkInvalid("invalid"))
    try:
        if request.method != "POST":
            subscription_open(token=token, action="unsubscribe")
            return _page(
                request,
                "unsubscribe.html",
                {
                    "heading": "Unsubscribe",
                    "question": "Stop all status updates to this address?",
                    "button": "Unsubscribe",
                },
            )
        subscription_unsubscribe(token=token, action="unsubscribe")
    except LinkInvalid as error:
        row = error.row
        if one_click and isinstance(row, Subscriber) and row.state == SubscriberState.UNSUBSCRIBED:
            # A provider repeating its one-click POST: done already, and it is told so.
            return _one_click_answer("Unsubscribed.")
        return _refused(request, error)
    if one_click:
        return _one_click_answer("Unsubscribed.")
    return _unsubscribed(request)


@csrf_exempt
@never_cache
def contact_optout(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    one_click = request.method == "POST" and _one_click(request)
    if not _token_ok(token):
        return _refused(request, LinkInvalid("invalid"))
    try:
        if request.method != "POST":
            contact_open(token=token)
            return _page(
                request,
                "unsubscribe.html",
                {
                    "heading": "Stop incident email",
                    "question": "Stop incident emails about your account's services to this "
                    "address? Your account owner can still contact you directly.",
                    "button": "Stop incident email",
                },
            )
        contact_opt_out(token=token)
    except LinkInvalid as error:
        row = error.row
        if one_click and row is not None and not getattr(row, "incident_email", True):
            return _one_click_answer("Opted out.")
        return _refused(request, error)
    if one_click:
        return _one_click_answer("Opted out.")
    return _page(
        request,
        "done.html",
        {
            "heading": "Incident email stopped",
            "lines": ["No more incident emails will be sent to this address."],
        },
    )
