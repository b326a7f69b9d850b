"""Rate limits per API token (each token its own budget), per user for browser sessions, and
per address for anonymous requests (the schema and docs).

A sliding window counted atomically in Redis when the cache is Redis, per process otherwise;
when the cache is down requests are let through with a warning (``incidents.ratelimit``)."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from ..ratelimit import rate_limit_hit, rate_parse


class PerTokenRateThrottle(BaseThrottle):
    """Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``: ``token`` for requests
    authenticated by an API token or a session, ``anon`` for the rest. A refused request is a
    429 whose ``Retry-After`` says when the oldest request of the window leaves it."""

    def __init__(self) -> None:
        self.scope = "anon"
        self.retry_after: int | None = None

    def allow_request(self, request, view) -> bool:
        user = request.user
        self.scope = "token" if user and user.is_authenticated else "anon"
        # Read at request time (not import time) so a settings change takes effect.
        rate = rate_parse(api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))
        if rate is None:
            return True
        decision = rate_limit_hit(key=self.key(request), rate=rate)
        self.retry_after = decision.retry_after
        return decision.allowed

    def wait(self) -> int | None:
        return self.retry_after

    def key(self, request) -> str:
        token = request.auth
        digest = getattr(token, "digest", None)
        if digest:
            ident = f"token:{digest[:40]}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return f"api:{ident}"
