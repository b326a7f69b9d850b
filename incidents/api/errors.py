"""The one place where errors become HTTP responses, and the error shape the schema documents.

Every error body has the same shape, whether it comes from a domain error of the services or
from DRF itself (parse errors, validation, authentication, permissions, 404, 405, 415, 429)::

    {"status": 409, "code": "transition_not_allowed", "detail": "Cannot close ...",
     "errors": {}, "allowed_actions": ["reopen"]}

``errors`` maps field names (dotted for nested input, e.g. ``services.0``) to messages;
``allowed_actions`` appears on 409 transition errors, ``missing_fields`` on failed guards.

Errors that Django answers before a view runs or around it (an unknown path, a body over
``DATA_UPLOAD_MAX_MEMORY_SIZE``, a server error) get the same shape under ``/api/`` and
``/hooks/`` from :class:`incidents.api.middleware.JsonErrorsMiddleware`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..errors import ActionForbidden, GuardFailed, InvalidInput, TransitionNotAllowed
from ..services.catalog import ServiceInUse
from ..services.security import login_failure_from_request


class ErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status code, repeated.")
    code = serializers.CharField(
        help_text=(
            "Stable machine-readable code: parse_error, invalid, invalid_input, guard_failed, "
            "transition_not_allowed, action_forbidden, permission_denied, not_authenticated, "
            "authentication_failed, not_found, method_not_allowed, not_acceptable, "
            "payload_too_large, unsupported_media_type, in_use, throttled, server_error."
        )
    )
    detail = serializers.CharField(help_text="A human-readable explanation.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per input field; empty when the error is not about a field.",
    )
    allowed_actions = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="On 409 transition_not_allowed: the actions possible now for this user.",
    )
    missing_fields = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="On 400 guard_failed: the incident fields the action needs filled in.",
    )


_DESCRIPTIONS = {
    400: "Malformed JSON, invalid input, or a failed guard (see `errors`).",
    401: "No credentials or invalid credentials (`Authorization: Token <key>`).",
    403: "The user's role does not allow this.",
    404: "No such resource.",
    405: "Method not allowed on this resource.",
    406: "The Accept header asks for a format the API cannot produce.",
    409: "Not allowed in the resource's current state (see `allowed_actions`).",
    413: "The request body is larger than the limit (`DATA_UPLOAD_MAX_MEMORY_SIZE`, 2.5 MiB).",
    415: "The request body is not JSON.",
    429: "Too many requests for this token; retry after the `Retry-After` seconds.",
}
READ_ERRORS = (400, 401, 403, 404, 405, 406, 429)
WRITE_ERRORS = (400, 401, 403, 404, 405, 406, 413, 415, 429)


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the given error statuses, all with the one error shape."""
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=_DESCRIPTIONS[code])
        for code in codes
    }


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested validation detail as {"field.sub.0": ["message", ...]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in flatten_errors(value, name).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            name = f"{prefix}.{index}" if prefix else str(index)
            for field, messages in flatten_errors(item, name).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    return {prefix or "non_field_errors": [str(detail)]}


def _body(http_status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": http_status, "code": code, "detail": detail, "errors": {}}
    body.update(extra)
    return body


def payload_too_large_detail() -> str:
    return f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def _domain_response(exc: Exception) -> Response | None:
    if isinstance(exc, TransitionNotAllowed):
        data = _body(409, "transition_not_allowed", exc.message, allowed_actions=exc.allowed)
        return Response(data, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, GuardFailed):
        errors = {field: [message] for field, message in exc.errors.items()}
        data = _body(
            400, "guard_failed", exc.message, errors=errors, missing_fields=list(exc.errors)
        )
        return Response(data, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ActionForbidden):
        return Response(_body(403, "action_forbidden", exc.message), status=403)
    if isinstance(exc, ServiceInUse):
        errors = {field: [str(message)] for field, message in exc.errors.items()}
        return Response(_body(409, "in_use", exc.message, errors=errors), status=409)
    if isinstance(exc, InvalidInput):
        errors = {field: [str(message)] for field, message in exc.errors.items()}
        return Response(_body(400, "invalid_input", exc.message, errors=errors), status=400)
    return None


def _detail_text(exc: exceptions.APIException, errors: dict[str, list[str]]) -> str:
    if isinstance(exc, exceptions.ValidationError):
        parts = [f"{field}: {' '.join(messages)}" for field, messages in errors.items()]
        return "Invalid input. " + "; ".join(parts) if parts else "Invalid input."
    return str(exc.detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map domain errors and DRF's own errors to the one JSON error shape."""
    if isinstance(exc, exceptions.AuthenticationFailed):
        # A refused API credential is a failed login for the security watch (§7.2).
        login_failure_from_request(request=context.get("request"), channel="api")
    response = _domain_response(exc)
    if response is not None:
        set_rollback()
        return response

    if isinstance(exc, RequestDataTooBig):
        # Django raises it when the body is read, before the parser; its own answer is an
        # HTML 400 and a traceback in the security log.
        return Response(_body(413, "payload_too_large", payload_too_large_detail()), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: let Django log it and answer 500

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    wait = getattr(exc, "wait", None)
    if wait is not None:
        headers["Retry-After"] = str(max(1, round(wait)))

    errors = flatten_errors(exc.detail) if isinstance(exc, exceptions.ValidationError) else {}
    code = exc.default_code
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
    data = _body(exc.status_code, code, _detail_text(exc, errors), errors=errors)
    set_rollback()
    return Response(data, status=exc.status_code, headers=headers)
