"""The survey pages the e-mail links to. No login: the signed token in the URL is the
credential. They work without JavaScript and on a phone.

* ``GET /survey/<token>/rate/<n>/`` records the score ``n`` at once (one click; another score
  through the same e-mail replaces it) and answers the thank-you page with the score, links to
  change it and the comment form. A ``HEAD`` (some mail scanners) checks the link and records
  nothing.
* ``/survey/<token>/comment/``: ``GET`` shows the comment form; ``POST`` (CSRF-protected: the
  form is served by Vigil with its cookie) sends a score and an optional comment and finalises
  the answer.

A tampered link answers 400, an expired or used one 410, a score outside 1-5 or a comment too
long 400, too many requests from one client 429: each changes nothing. Pages send no referrer
(the token is in the URL) and are never cached.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from communications.services.mailing import page_info
from incidents.errors import InvalidInput
from incidents.ratelimit import rate_limit_hit, rate_parse
from incidents.services.security import client_address

from ..models import SurveyInvitation
from ..services.survey import (
    COMMENT_MAX,
    RATINGS,
    SurveyLinkInvalid,
    survey_comment,
    survey_open,
    survey_public_title,
    survey_rate,
    survey_url,
)

logger = logging.getLogger(__name__)

# Longer than any token Vigil signs; anything longer is not worth verifying.
TOKEN_MAX = 500
# Per client address, every request (valid or not); "N/second|minute|hour|day", empty: none.
DEFAULT_RATE = "120/hour"

REFUSALS = {
    "invalid": (
        400,
        "This link does not work",
        "The link is incomplete or was changed. Open it again from the e-mail, copying the "
        "whole address.",
    ),
    "expired": (
        410,
        "This survey has closed",
        "The links of this survey have expired. Thank you all the same.",
    ),
    "used": (
        410,
        "You have already answered",
        "Your answer to this survey was sent and counted. Thank you.",
    ),
    "rating": (400, "This score does not exist", "Choose a score from 1 to 5."),
}


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    info = page_info()
    context = {"page": {"name": info.name, "url": info.url}, **context}
    response = render(request, f"kpis/survey/{template}", context, status=status)
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _refused(request: HttpRequest, reason: str) -> HttpResponse:
    status, heading, message = REFUSALS.get(reason, REFUSALS["invalid"])
    return _page(request, "refused.html", {"heading": heading, "message": message}, status)


def _limited(request: HttpRequest) -> HttpResponse | None:
    try:
        rate = rate_parse(getattr(settings, "VIGIL_SURVEY_IP_RATE", DEFAULT_RATE))
    except ValueError:
        logger.error("VIGIL_SURVEY_IP_RATE is not a rate (N/second|minute|hour|day); no limit.")
        return None
    if rate is None:
        return None
    decision = rate_limit_hit(key=f"survey:ip:{client_address(request) or 'unknown'}", rate=rate)
    if decision.allowed:
        return None
    retry = decision.retry_after or 1
    response = _page(
        request,
        "refused.html",
        {
            "heading": "Too many requests",
            "message": f"Please try again in {max(1, math.ceil(retry / 60))} minute(s).",
        },
        status=429,
    )
    response["Retry-After"] = str(retry)
    return response


def _about(invitation: SurveyInvitation) -> dict[str, Any]:
    return {
        "title": survey_public_title(incident=invitation.incident),
        "number": invitation.incident.number,
        "ratings": list(RATINGS.items()),
        "comment_max": COMMENT_MAX,
        "comment_url": survey_url(invitation, "comment"),
        "errors": {},
    }


@never_cache
def rate(request: HttpRequest, token: str, rating: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    limited = _limited(request)
    if limited is not None:
        return limited
    if not 0 < len(token) <= TOKEN_MAX:
        return _refused(request, "invalid")
    try:
        if request.method == "HEAD":
            invitation = survey_open(token=token, action="rate")
            return _page(request, "comment.html", {**_about(invitation), "chosen": None})
        invitation = survey_rate(token=token, rating=rating)
    except SurveyLinkInvalid as error:
        return _refused(request, error.reason)
    except InvalidInput:
        return _refused(request, "rating")
    # The same e-mail's link, for the other scores (valid until the answer is finalised).
    change = [(n, label, reverse("survey:rate", args=[token, n])) for n, label in RATINGS.items()]
    return _page(
        request,
        "rated.html",
        {
            **_about(invitation),
            "rating": invitation.rating,
            "rating_label": RATINGS[invitation.rating],
            "change": change,
        },
    )


@never_cache
@csrf_protect
def comment(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    limited = _limited(request)
    if limited is not None:
        return limited
    if not 0 < len(token) <= TOKEN_MAX:
        return _refused(request, "invalid")
    try:
        invitation = survey_open(token=token, action="comment")
    except SurveyLinkInvalid as error:
        return _refused(request, error.reason)
    if request.method != "POST":
        return _page(request, "comment.html", {**_about(invitation), "chosen": invitation.rating})
    text = request.POST.get("comment", "")
    chosen = request.POST.get("rating", "")
    try:
        invitation = survey_comment(token=token, rating=chosen, comment=text)
    except SurveyLinkInvalid as error:
        return _refused(request, error.reason)
    except InvalidInput as exc:
        context = _about(invitation)
        context.update(
            errors=exc.errors,
            comment=text[: COMMENT_MAX * 2],
            chosen=int(chosen) if chosen in {str(n) for n in RATINGS} else None,
        )
        return _page(request, "comment.html", context, status=400)
    return _page(
        request,
        "done.html",
        {
            "title": survey_public_title(incident=invitation.incident),
            "number": invitation.incident.number,
            "rating": invitation.rating,
            "rating_label": RATINGS[invitation.rating],
            "comment": invitation.comment,
        },
    )
