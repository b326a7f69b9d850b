"""django-anymail's inbound webhook URL (``/anymail/<esp>/inbound/``, namespace ``anymail``) of
the configured ESP, its view made to refuse a payload it cannot parse with 400 instead of a
server error.

Anymail checks the webhook's basic auth (``ANYMAIL_WEBHOOK_SECRET``) and signature first and
answers a failure with 400; but a body that passes and then fails to parse (malformed JSON, a
tracking event posted to the inbound URL, a missing field) escapes as an exception, i.e. a 500
that the ESP retries for hours. Here each inbound view is the same anymail view with one
change: such parse errors become anymail's own validation failure (400), and nothing is
written. Inbound views also refuse everything until a webhook secret is configured, where
the ESP has no signature of its own.

Only the inbound endpoint of the ESP named by ``VIGIL_INBOUND_EMAIL_PROVIDER`` is served; every
other inbound URL answers 404 (delivery tracking, a separate webhook, is mounted by the
communications app for ``VIGIL_EMAIL_TRACKING_PROVIDER``). Anymail's views raise
ImproperlyConfigured (a 500 with a traceback) when instantiated without their ESP's settings,
so an unconfigured ESP's view is never reached. The provider is read per request, so the
setting applies as configured.
"""

from __future__ import annotations

import functools

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWebhookValidationFailure
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404
from django.urls import URLPattern

app_name = "anymail"


class RefuseUnparsableMixin:
    """Turns the parse errors of an anymail inbound view into a 400, and refuses every
    message while an ESP that has no signature of its own has no basic-auth secret (anymail
    only warns; an open inbound URL would let anyone on the web open incidents)."""

    def validate_request(self, request):
        # Anymail runs every validate_request of the class chain; this one adds to them.
        if getattr(self, "warn_if_no_basic_auth", False) and not getattr(self, "basic_auth", None):
            raise AnymailWebhookValidationFailure(
                f"{self.esp_name} inbound email is refused until ANYMAIL_WEBHOOK_SECRET is set."
            )

    def parse_events(self, request):
        try:
            return super().parse_events(request)
        except (
            ValueError,  # malformed JSON or form data, bad dates and numbers
            KeyError,
            TypeError,
            AttributeError,  # JSON of the wrong shape (a list where an object belongs)
            AssertionError,  # Mandrill: inbound and tracking events mixed in one batch
            ImproperlyConfigured,  # anymail's "a tracking event on the inbound URL"
        ) as exc:
            raise AnymailWebhookValidationFailure(
                f"Malformed {self.esp_name} inbound payload: {type(exc).__name__}"
            ) from exc


def _inbound_esp(pattern) -> str | None:
    """The ESP whose inbound endpoint ``pattern`` is (anymail's URL names), else ``None``."""
    name = getattr(pattern, "name", None) or ""
    if name.endswith("_inbound_webhook"):
        return name.removesuffix("_inbound_webhook")
    if name == "mandrill_webhook":  # Mandrill's one endpoint takes inbound and tracking events
        return "mandrill"
    return None


# Every value VIGIL_INBOUND_EMAIL_PROVIDER may take (checked by ``incidents.checks``).
INBOUND_PROVIDERS = frozenset(
    esp for esp in map(_inbound_esp, anymail_urls.urlpatterns) if esp is not None
)


def _refusing_unparsable(view_class, view):
    guarded = type(view_class.__name__, (RefuseUnparsableMixin, view_class), {})
    return guarded.as_view(**view.view_initkwargs)


def _served_for(esp: str, view):
    """``view``, answering 404 unless ``esp`` is the configured inbound email provider."""

    @functools.wraps(view)  # keeps csrf_exempt and view_class
    def inbound_if_configured(request, *args, **kwargs):
        if esp != settings.VIGIL_INBOUND_EMAIL_PROVIDER:
            raise Http404("No inbound email from this provider.")
        return view(request, *args, **kwargs)

    return inbound_if_configured


def _inbound_pattern(pattern: URLPattern, esp: str) -> URLPattern:
    view_class = pattern.callback.view_class
    view = _refusing_unparsable(view_class, pattern.callback)
    return URLPattern(pattern.pattern, _served_for(esp, view), pattern.default_args, pattern.name)


urlpatterns = [
    _inbound_pattern(pattern, esp)
    for pattern in anymail_urls.urlpatterns
    if isinstance(pattern, URLPattern) and (esp := _inbound_esp(pattern)) is not None
]
