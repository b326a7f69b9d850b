"""Signal receivers of the incident core, connected when ``IncidentsConfig.ready`` imports
this module: failed logins counted for the security watch (§7.1), inbound email taken as
customer reports (§4.1)."""

from __future__ import annotations

from typing import Any

from anymail.signals import inbound
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from .inbound import inbound_email_receive
from .services.security import login_failure_from_request


@receiver(user_login_failed, dispatch_uid="incidents.count_failed_login")
def count_failed_login(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs):
    """Every failed ``authenticate()`` with a request: the admin login page, and any API
    authentication that checks a password. (The API's token failures are counted by the API's
    exception handler, which sees no ``authenticate()`` call.)"""
    path = getattr(request, "path", "") or ""
    channel = "api" if path.startswith("/api/") else "admin" if request is not None else "other"
    login_failure_from_request(
        request=request, channel=channel, username=str(credentials.get("username") or "")
    )


@receiver(inbound, dispatch_uid="incidents.inbound_email")
def take_inbound_email(sender: Any, event: Any, esp_name: str, **kwargs) -> None:
    inbound_email_receive(event=event, esp_name=esp_name)
