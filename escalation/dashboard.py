"""Escalation's part of the admin index's "What needs you now": who is on call now, the primary
and backup contact of each response role (the people paged when a role has nobody assigned on
an incident, and when a page is not acknowledged in time). Registered from ``ready()`` through
the core's index-panel registry, in the dashboard's live area."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from incidents.admin.extensions import admin_index_panel_register
from incidents.models import ResponseRole

PERMISSION = "incidents.view_responserole"


def on_call_panel(*, request: HttpRequest) -> Any:
    """The response roles with their primary and backup contacts (one query)."""
    roles = list(
        ResponseRole.objects.select_related("primary_contact", "backup_contact").order_by(
            "position", "name"
        )
    )
    if not roles:
        return None
    rows = [
        {
            "role": role,
            "primary": role.primary_contact,
            "backup": role.backup_contact,
            "mine": request.user.pk
            in {c.user_id for c in (role.primary_contact, role.backup_contact) if c is not None},
        }
        for role in roles
    ]
    html = render_to_string(
        "admin/escalation/on_call_panel.html", {"rows": rows, "user": request.user}, request=request
    )
    return mark_safe(html)  # rendered by the template engine, which escapes every value


def register() -> None:
    admin_index_panel_register(
        key="on-call", title="On call now", render=on_call_panel, permission=PERMISSION, area="now"
    )
