"""One-click acknowledge links carried by notifications (route ``ack/``).

A link is ``<base>/ack/#<token>``. The token, the credential, is the URL's fragment, which
browsers never send: the one request a click makes is ``GET /ack/``, so no access log of Vigil, a
proxy or a load balancer ever holds a token. That GET answers the same page to everyone, naming
nothing; its script (``static/escalation/ack.js``, no inline script) takes the token from the
fragment, clears it from the address bar, and posts it in a form body. The POST shows what the
link will do and a button; only a POST with ``confirm`` acknowledges. So mail clients and chat
previews that open links on their own (link scanners, unfurlers) fetch a page that knows
nothing, and even one that runs the script only reaches the confirmation. Without JavaScript
the page says so and points to the incident in Vigil.

The token is a signed payload (``escalation.services.ack_links.ack_link_make``) naming the incident,
the contact and the user it acts as, valid for ``VIGIL_ACK_LINK_MAX_AGE`` and usable once. No
session is involved, so CSRF protection, which guards a browser's ambient session, adds nothing
here and would only fail people whose browsers block the cookie. Pages are never cached and send
no referrer. Django's error reports (the debug page, the admins' error email where one is set
up) show the posted token as stars.

Links of the earlier form ``/ack/<token>/`` (the token in the path, so in access logs) no longer
acknowledge: they answer 410 with a link to the incident, and change nothing.

Answers: 200 the link page, a confirmation or a result; 400 no token, or a tampered or malformed
one; 403 no Vigil login behind the contact, or no permission to acknowledge; 404 incident gone;
409 nothing to acknowledge (cancelled); 410 expired, already used, or a link of the old form.
Every refusal changes nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters

from incidents.models import Incident
from incidents.timeformat import user_zone

from .services.ack_links import AckLinkError, ack_link_check, ack_link_read, ack_link_use

# Longer than any token Vigil signs; anything longer is not worth verifying.
TOKEN_MAX = 1000


def _page(
    request: HttpRequest, template: str, context: dict, status: int = 200, *, user=None
) -> HttpResponse:
    # The link's person reads its times in their own zone (no session here to carry it).
    with timezone.override(user_zone(user)):
        response = render(request, template, context, status=status)
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _refused(request: HttpRequest, error: AckLinkError) -> HttpResponse:
    return _page(
        request,
        "escalation/ack_refused.html",
        {"message": error.message, "code": error.code},
        status=error.status,
    )


@csrf_exempt
@never_cache
@sensitive_post_parameters("token")
def acknowledge_link(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return _page(request, "escalation/ack_open.html", {})
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    token = request.POST.get("token", "").strip()
    if not token or len(token) > TOKEN_MAX:
        return _refused(
            request,
            AckLinkError(
                "This page needs the acknowledge link from your notification, complete: the "
                "part after the # is its key. Open the link again, or open the incident in "
                "Vigil to acknowledge it.",
                status=400,
                code="invalid",
            ),
        )
    if request.POST.get("confirm"):
        try:
            result = ack_link_use(token=token)
        except AckLinkError as error:
            return _refused(request, error)
        return _page(
            request,
            "escalation/ack_done.html",
            {
                "incident": result.incident,
                "actor": result.actor,
                "outcome": result.outcome,
                "roles": result.roles,
            },
            user=result.actor,
        )
    try:
        incident, user, contact = ack_link_check(ack_link_read(token))
    except AckLinkError as error:
        return _refused(request, error)
    return _page(
        request,
        "escalation/ack_confirm.html",
        {"incident": incident, "actor": user, "contact": contact, "token": token},
        user=user,
    )


@csrf_exempt
@never_cache
def acknowledge_link_retired(request: HttpRequest, token: str) -> HttpResponse:
    """A link of the old form, its token in the path: refused whatever it holds, pointing to
    the incident when the token is one Vigil signed and still valid."""
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        incident = Incident.objects.filter(pk=ack_link_read(token)["i"]).first()
    except AckLinkError:
        incident = None
    return _page(
        request,
        "escalation/ack_retired.html",
        {
            "incident": incident,
            "incident_url": settings.VIGIL_BASE_URL + incident.get_absolute_url()
            if incident
            else "",
        },
        status=410,
    )
