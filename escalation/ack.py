"""One-click acknowledge links carried by notifications (route ``ack/<token>/``).

GET shows what the link will do and a button; only the POST acknowledges. Mail clients and
chat previews open links on their own (link scanners, unfurlers); a GET that acted would
acknowledge incidents nobody has looked at.

The link is the credential: a signed token (``escalation.services.paging.ack_link_make``)
naming the incident, the contact and the user it acts as, valid for
``VIGIL_ACK_LINK_MAX_AGE`` and usable once. No session is involved, so CSRF protection, which
guards a browser's ambient session, adds nothing here and would only fail people whose
browsers block the cookie. Pages are never cached and send no referrer, so the token does not
leak into caches or other sites' logs.

Answers: 200 confirmation or result; 400 tampered or malformed link; 403 no Vigil login behind
the contact, or no permission to acknowledge; 404 incident gone; 409 nothing to acknowledge
(cancelled); 410 expired or already used. Every refusal changes nothing.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from .services.paging import AckLinkError, ack_link_check, ack_link_read, ack_link_use


def _page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
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
def acknowledge_link(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if request.method == "POST":
        try:
            result = ack_link_use(token=token)
        except AckLinkError as error:
            return _refused(request, error)
        return _page(
            request,
            "escalation/ack_done.html",
            {"incident": result.incident, "actor": result.actor, "outcome": result.outcome},
        )
    try:
        incident, user, contact = ack_link_check(ack_link_read(token))
    except AckLinkError as error:
        return _refused(request, error)
    return _page(
        request,
        "escalation/ack_confirm.html",
        {"incident": incident, "actor": user, "contact": contact},
    )
