"""Failed-login episodes (§7.1 security monitoring): what the security watch saw, read-only,
beside the security incident each episode opened."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ..models import LoginFailureEpisode
from .common import ReadOnlyAdminMixin


@admin.register(LoginFailureEpisode)
class LoginFailureEpisodeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "first_window",
        "incident_link",
        "is_open",
        "windows",
        "failures",
        "peak",
        "address_list",
    )
    list_filter = ("is_open",)
    list_select_related = ("incident",)
    ordering = ("-first_window", "-id")
    fields = (
        "incident",
        "is_open",
        "first_window",
        "last_window",
        "windows",
        "failures",
        "peak",
        "last_window_failures",
        "last_window_by_channel",
        "addresses",
        "usernames",
        "updated_at",
    )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("incidents.view_incident")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incidents.view_incident")

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: LoginFailureEpisode) -> str:
        url = reverse("admin:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.incident.number)

    @admin.display(description="Source addresses")
    def address_list(self, obj: LoginFailureEpisode) -> str:
        shown = ", ".join(obj.addresses[:5])
        return shown + (f" (+{len(obj.addresses) - 5})" if len(obj.addresses) > 5 else "")
