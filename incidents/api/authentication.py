"""API token authentication: django-rest-knox's, with refused tokens throttled per client
address (§7.1).

A token knox refuses counts one failure for the client address; once the address has
``VIGIL_API_TOKEN_FAILURE_LIMIT`` of them in the window, its requests that present
``Authorization: Token ...`` are answered 429 (``Retry-After``: until the oldest failure
leaves the window) before their token is looked at, and counted by the failed-login watch as
refused logins. Requests without a token header are untouched (DRF answers them 401 as
before). The count fails open: with the cache down, tokens are checked as usual
(``incidents.services.security``).
"""

from __future__ import annotations

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.settings import knox_settings
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

from ..services.security import (
    api_token_blocked,
    api_token_failure_record,
    client_address,
    login_failure_from_request,
)


class TokenThrottled(exceptions.Throttled):
    default_detail = "Too many failed API token attempts from this address."


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).split()
        prefix = knox_settings.AUTH_HEADER_PREFIX.encode().lower()
        if not header or header[0].lower() != prefix:
            return super().authenticate(request)
        address = client_address(request)
        wait = api_token_blocked(address=address)
        if wait is not None:
            login_failure_from_request(request=request, channel="api")
            raise TokenThrottled(wait=wait)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            api_token_failure_record(address=address)
            raise


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI security scheme of knox's token (``knoxApiToken``) for this subclass."""

    target_class = "incidents.api.authentication.TokenAuthentication"
