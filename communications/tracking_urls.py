"""django-anymail's tracking webhook URL (``/anymail/<esp>/tracking/``) of the ESP named by
``VIGIL_EMAIL_TRACKING_PROVIDER``: the delivery events of customer-facing email (delivered,
bounced, complained, unsubscribed...), taken by ``communications.services.tracking``.

The same treatment as the inbound endpoint (``incidents.inbound_urls``): only the configured
ESP's endpoint answers (every other tracking URL is a 404, and so is this one while the setting
is empty); a request must pass the ESP's signature (Mailgun, SendGrid's signed webhooks,
Postal, Mailjet...) or, for an ESP without one (Postmark, Amazon SES...), the basic-auth
credentials of ``ANYMAIL_WEBHOOK_SECRET`` — without a configured secret such an ESP's events
are refused, never taken on trust; and a body that passes but cannot be parsed is a 400 (not a
500 the ESP would retry for hours). A refused request writes nothing. An ESP whose signing key
is not configured answers 400 too (anymail would raise ImproperlyConfigured, a 500).
"""

from __future__ import annotations

import functools

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWebhookValidationFailure
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpResponseBadRequest
from django.urls import URLPattern

app_name = "anymail_tracking"

SUFFIX = "_tracking_webhook"


class RefuseUnverifiedMixin:
    """Refuses every event while an ESP without a signature of its own has no basic-auth
    secret, and turns parse errors into anymail's validation failure (a 400)."""

    def validate_request(self, request):
        # Anymail runs every validate_request of the class chain; this one adds to them.
        if getattr(self, "warn_if_no_basic_auth", False) and not getattr(self, "basic_auth", None):
            raise AnymailWebhookValidationFailure(
                f"{self.esp_name} tracking events are refused until ANYMAIL_WEBHOOK_SECRET is set."
            )

    def parse_events(self, request):
        try:
            return super().parse_events(request)
        except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as exc:
            raise AnymailWebhookValidationFailure(
                f"Malformed {self.esp_name} tracking payload: {type(exc).__name__}"
            ) from exc


def _tracking_esp(pattern) -> str | None:
    name = getattr(pattern, "name", None) or ""
    return name.removesuffix(SUFFIX) if name.endswith(SUFFIX) else None


# Every value VIGIL_EMAIL_TRACKING_PROVIDER may take.
TRACKING_PROVIDERS = frozenset(
    esp for esp in map(_tracking_esp, anymail_urls.urlpatterns) if esp is not None
)


def _served_for(esp: str, view_class, initkwargs):
    guarded = type(view_class.__name__, (RefuseUnverifiedMixin, view_class), {})
    view = guarded.as_view(**initkwargs)

    @functools.wraps(view)  # keeps csrf_exempt
    def tracking_if_configured(request, *args, **kwargs):
        if esp != getattr(settings, "VIGIL_EMAIL_TRACKING_PROVIDER", ""):
            raise Http404("No delivery tracking from this provider.")
        try:
            return view(request, *args, **kwargs)
        except ImproperlyConfigured:
            # The ESP's signing key is missing: refuse, as an unverifiable request.
            return HttpResponseBadRequest(f"{esp} tracking webhook is not configured.")

    return tracking_if_configured


urlpatterns = [
    URLPattern(
        pattern.pattern,
        _served_for(esp, pattern.callback.view_class, pattern.callback.view_initkwargs),
        pattern.default_args,
        pattern.name,
    )
    for pattern in anymail_urls.urlpatterns
    if isinstance(pattern, URLPattern) and (esp := _tracking_esp(pattern)) is not None
]
