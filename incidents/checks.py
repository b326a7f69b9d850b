"""Vigil's own system checks (``manage.py check``; the deployment ones with ``--deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError

from .inbound_urls import INBOUND_PROVIDERS
from .management.demo import DEMO_PASSWORD, demo_logins


def _ours(app_configs: Any) -> bool:
    return app_configs is None or any(config.name == "incidents" for config in app_configs)


@register(Tags.security, deploy=True)
def demo_logins_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """vigil.W001: the demo's logins, with their published password, are in this database.

    Checks the demo's usernames only (a password check each, PBKDF2 being slow by design).
    A database without tables yet, or out of reach, has no demo logins to report: that is for
    ``migrate`` and Django's own checks to say, so ``check --deploy`` on a fresh checkout
    stays clean.
    """
    if not _ours(app_configs):
        return []
    try:
        found = demo_logins()
    except DatabaseError:
        return []
    if not found:
        return []
    return [
        Warning(
            f"The demo logins with the published password {DEMO_PASSWORD!r} exist in this "
            f"database: {', '.join(found)}.",
            hint=(
                "Delete these users or give them real passwords (admin → Users, or "
                "`manage.py changepassword <username>`). The demo data (`manage.py demo_data`) "
                "belongs only in a throwaway database."
            ),
            id="vigil.W001",
        )
    ]


@register()
def inbound_email_provider_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """vigil.E001: VIGIL_INBOUND_EMAIL_PROVIDER names no ESP with an anymail inbound webhook."""
    provider = settings.VIGIL_INBOUND_EMAIL_PROVIDER
    if not _ours(app_configs) or not provider or provider in INBOUND_PROVIDERS:
        return []
    return [
        Error(
            f"VIGIL_INBOUND_EMAIL_PROVIDER={provider!r} is not an email provider with an "
            "inbound webhook in django-anymail, so no inbound email URL is served.",
            hint="One of: " + ", ".join(sorted(INBOUND_PROVIDERS)) + " (or empty for none).",
            id="vigil.E001",
        )
    ]
