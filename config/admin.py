"""Vigil's admin site: the staff workspace. Its index page leads with what needs attention."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse


class VigilAdminSite(admin.AdminSite):
    site_header = "Vigil incident management"
    site_title = "Vigil"
    index_title = "Workspace"
    # "View site" leads to what customers see: the public status page.
    site_url = "/status/"
    # The incident list needs the page's width for its columns more than a second menu.
    enable_nav_sidebar = False

    def get_urls(self):
        from django.urls import path

        # The dashboard's list alone, which the index polls (htmx) to stay current.
        return [path("needs/", self.needs_view, name="vigil_needs"), *super().get_urls()]

    def needs_view(self, request: HttpRequest) -> HttpResponse:
        """The "What needs you now" list alone, for staff who may view incidents.

        A poll from a page whose session ended is told to reload (the reload leads to the login
        page) instead of swapping the login form into the list."""
        if not self.has_permission(request) and request.htmx:
            from django_htmx.http import HttpResponseClientRefresh

            return HttpResponseClientRefresh()
        return self.admin_view(self._needs_fragment)(request)

    def _needs_fragment(self, request: HttpRequest) -> HttpResponse:
        from django.core.exceptions import PermissionDenied
        from django.template.response import TemplateResponse

        from incidents.admin.dashboard import needs_context

        if not request.user.has_perm("incidents.view_incident"):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/incidents/dashboard/needs.html",
            {"board": needs_context(request=request)},
        )

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        context["vigil_recent_actions"] = _recent_actions(request)
        if request.user.has_perm("incidents.view_incident"):
            from incidents.admin.dashboard import needs_context

            context["vigil_dashboard"] = needs_context(request=request)
            from incidents.selectors import event_handler_alerts

            context["vigil_handler_alerts"] = event_handler_alerts()
        if request.user.has_perm("escalation.view_notification"):
            from escalation.selectors import notification_alerts

            context["vigil_notification_alerts"] = notification_alerts()
        from incidents.admin.extensions import admin_index_panels

        context["vigil_index_panels"] = admin_index_panels(request=request)
        return super().index(request, extra_context=context)


def _recent_actions(request: HttpRequest, limit: int = 10) -> list:
    """The user's latest admin action on each object (not every save of the same incident), the
    newest first: one query."""
    from django.contrib.admin.models import LogEntry
    from django.db.models import Max

    latest = (
        LogEntry.objects.filter(user=request.user.pk)
        .values("content_type", "object_id")
        .annotate(last=Max("pk"))
        .values("last")
    )
    return list(
        LogEntry.objects.filter(pk__in=latest)
        .select_related("content_type", "user")
        .order_by("-action_time", "-pk")[:limit]
    )
