"""Rate limits per API token (each token its own budget), per user for browser sessions, and
per address for anonymous requests (the schema and docs)."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class PerTokenRateThrottle(SimpleRateThrottle):
    """Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``: ``token`` for requests
    authenticated by an API token or a session, ``anon`` for the rest."""

    def __init__(self) -> None:
        # The scope depends on the request, so the rate is resolved in allow_request.
        pass

    def get_rate(self) -> str | None:
        # Read at request time (not import time) so a settings change takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        user = request.user
        self.scope = "token" if user and user.is_authenticated else "anon"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        token = request.auth
        digest = getattr(token, "digest", None)
        if digest:
            ident = f"token:{digest[:40]}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return f"vigil:throttle:{ident}"
