"""Per-request settings of the signed-in person, and the request as one unit of work for the
policy tokens."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .memo import tokens_scope
from .timeformat import zone_named

# The session keeps the person's zone name ("" for the default zone), written when they sign in
# and when they save their preferences, so a page costs no query for it.
SESSION_KEY = "vigil_time_zone"


def remember_time_zone(request: HttpRequest, name: str | None) -> None:
    if hasattr(request, "session"):
        request.session[SESSION_KEY] = name or ""


def load_time_zone(request: HttpRequest, user) -> str:
    from .models import UserPreference

    name = (
        UserPreference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
    )
    remember_time_zone(request, name)
    return name or ""


class UserTimeZoneMiddleware:
    """Activates the signed-in person's time zone for the request (their preference, else
    ``settings.TIME_ZONE``), so templates and :mod:`incidents.timeformat` show their times."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            name = request.session.get(SESSION_KEY)
            if name is None:
                name = load_time_zone(request, user)
            timezone.activate(zone_named(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class PolicyTokensMiddleware:
    """Makes the request one unit of work of :mod:`incidents.memo`: the policy's version tokens
    are read once, together, for all it reads."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with tokens_scope():
            return self.get_response(request)
