"""Signal receivers of the incident core, connected when ``IncidentsConfig.ready`` imports
this module: failed logins and django-axes lockouts counted for the security watch (§7.1) (and
its cached threshold cleared when alert rules are saved), inbound email taken as customer
reports (§4.1)."""

from __future__ import annotations

from typing import Any

from anymail.signals import inbound
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from .inbound import inbound_email_receive
from .models import AlertRule
from .services.security import (
    login_failure_from_request,
    login_lockout_record,
    login_watch_rule_changed,
)


@receiver(user_login_failed, dispatch_uid="incidents.count_failed_login")
def count_failed_login(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs):
    """Every failed ``authenticate()`` with a request: the admin login page (a login refused
    by django-axes's lockout too: axes refuses it inside ``authenticate()``), and any API
    authentication that checks a password. (The API's token failures are counted by the API's
    exception handler and its token authentication, which see no ``authenticate()`` call.)"""
    path = getattr(request, "path", "") or ""
    channel = "api" if path.startswith("/api/") else "admin" if request is not None else "other"
    login_failure_from_request(
        request=request, channel=channel, username=str(credentials.get("username") or "")
    )


@receiver(user_locked_out, dispatch_uid="incidents.count_lockout")
def count_lockout(sender: Any, **kwargs) -> None:
    """django-axes's lockout of a username or address: sent (before ``user_login_failed``
    reaches :func:`count_failed_login`, "axes" coming before "incidents" in INSTALLED_APPS) for
    the failure that reaches the limit and for each one while locked out."""
    login_lockout_record()


@receiver(post_save, sender=AlertRule, dispatch_uid="incidents.login_watch_rule_saved")
def forget_login_watch_threshold(sender: Any, **kwargs) -> None:
    """The failed-login watch caches its rule's threshold; a saved rule clears it once the
    save has committed (before that, another process could cache the old value again)."""
    transaction.on_commit(login_watch_rule_changed, robust=True)


@receiver(inbound, dispatch_uid="incidents.inbound_email")
def take_inbound_email(sender: Any, event: Any, esp_name: str, **kwargs) -> None:
    inbound_email_receive(event=event, esp_name=esp_name)


@receiver(user_logged_in, dispatch_uid="incidents.remember_time_zone")
def remember_time_zone_at_login(sender: Any, request: Any = None, user: Any = None, **kwargs):
    """The person's time zone goes into their new session, so pages need no query for it."""
    if request is not None and user is not None and hasattr(request, "session"):
        from .middleware import load_time_zone

        load_time_zone(request, user)
