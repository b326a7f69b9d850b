"""django-anymail's webhook URLs (``/anymail/...``, namespace ``anymail``), with its inbound
views made to refuse a payload they cannot parse with 400 instead of a server error.

Anymail checks the webhook's basic auth (``ANYMAIL_WEBHOOK_SECRET``) and signature first and
answers a failure with 400; but a body that passes and then fails to parse (malformed JSON, a
tracking event posted to the inbound URL, a missing field) escapes as an exception, i.e. a 500
that the ESP retries for hours. Here each inbound view is the same anymail view with one
change: such parse errors become anymail's own validation failure (400), and nothing is
written. Tracking webhooks (delivery, bounce) are anymail's, unchanged, for whoever connects
to ``anymail.signals.tracking``. Inbound views also refuse everything until a webhook secret
is configured, where the ESP has no signature of its own.
"""

from __future__ import annotations

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import inbound
from django.core.exceptions import ImproperlyConfigured
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
            ImproperlyConfigured,  # anymail's "a tracking event on the inbound URL"
        ) as exc:
            raise AnymailWebhookValidationFailure(
                f"Malformed {self.esp_name} inbound payload: {type(exc).__name__}"
            ) from exc


def _refusing_unparsable(pattern):
    view_class = getattr(pattern.callback, "view_class", None)
    if not isinstance(pattern, URLPattern) or getattr(view_class, "signal", None) is not inbound:
        return pattern
    guarded = type(view_class.__name__, (RefuseUnparsableMixin, view_class), {})
    view = guarded.as_view(**pattern.callback.view_initkwargs)
    return URLPattern(pattern.pattern, view, pattern.default_args, pattern.name)


urlpatterns = [_refusing_unparsable(pattern) for pattern in anymail_urls.urlpatterns]
