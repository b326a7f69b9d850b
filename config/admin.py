"""Vigil's admin site: the staff workspace. Its index page leads with what needs attention."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse


class VigilAdminSite(admin.AdminSite):
    site_header = "Vigil incident management"
    site_title = "Vigil"
    index_title = "Workspace"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        from incidents.selectors import dashboard_summary

        context = {"vigil_dashboard": dashboard_summary(), **(extra_context or {})}
        return super().index(request, extra_context=context)
