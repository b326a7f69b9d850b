"""Error pages in the API's shape for the machine-facing paths.

DRF answers the errors of its own views in the one JSON error shape (``errors.py``), and the
webhooks answer theirs; but Django answers some errors before or around any view, in HTML: an
unknown path (404), a server error (500, its ``handler500`` page), a ``SuspiciousOperation``
(400), and a view's renderer may answer in its own format (the schema view's 405 in YAML). Under
``/api/``, ``/hooks/`` and ``/v2/enqueue`` this middleware gives every such error response the
JSON shape ``{"status", "code", "detail", "errors"}``, with the same status and the headers a
client acts on (``Allow``, ``Retry-After``, ``WWW-Authenticate``). Everything else, the admin
included, keeps Django's HTML pages. Nothing of the original body is passed on: a server error
says only that it was logged.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import is_valid_path

KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")

_ERRORS = {
    400: ("bad_request", "The request could not be read."),
    401: ("not_authenticated", "Authentication credentials were not provided or are invalid."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found: nothing answers at this path."),
    405: ("method_not_allowed", "Method not allowed at this path."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type: send application/json."),
    429: ("throttled", "Too many requests; retry later."),
    500: ("server_error", "A server error occurred. It has been logged."),
}


def _is_json(response: HttpResponse) -> bool:
    content_type = (response.get("Content-Type") or "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def json_error(status: int, reason: str, detail: str | None = None) -> JsonResponse:
    """The error in the API's shape; ``detail`` replaces the status's usual one."""
    code, usual = _ERRORS.get(status, ("error", reason or "Error."))
    detail = detail or usual
    return JsonResponse(
        {"status": status, "code": code, "detail": detail, "errors": {}}, status=status
    )


def _slash_missing(request: HttpRequest) -> bool:
    path = request.path_info
    return not path.endswith("/") and is_valid_path(f"{path}/", getattr(request, "urlconf", None))


class JsonErrorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # The API and the inbound webhooks (config/settings.py, HOOKS_PATHS).
        self.prefixes = ("/api/", *settings.HOOKS_PATHS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code < 400
            or not request.path_info.startswith(self.prefixes)
            or _is_json(response)
        ):
            return response
        detail = None
        if response.status_code == 404 and _slash_missing(request):
            # Django's CommonMiddleware would redirect, which a sender's POST does not follow
            # (the webhooks are served without it: config/settings.py, HOOKS_MIDDLEWARE).
            detail = f"Not found: this path needs its trailing slash ({request.path}/)."
        replaced = json_error(response.status_code, response.reason_phrase, detail)
        for name in KEPT_HEADERS:
            if name in response:
                replaced[name] = response[name]
        return replaced
