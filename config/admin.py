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

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        if request.user.has_perm("incidents.view_incident"):
            context["vigil_dashboard"] = _dashboard()
            from incidents.selectors import event_handler_alerts

            context["vigil_handler_alerts"] = event_handler_alerts()
        if request.user.has_perm("escalation.view_notification"):
            from escalation.selectors import notification_alerts

            context["vigil_notification_alerts"] = notification_alerts()
        from incidents.admin.extensions import admin_index_panels

        context["vigil_index_panels"] = admin_index_panels(request=request)
        return super().index(request, extra_context=context)


def _dashboard() -> dict:
    """Active incidents by severity and those past their targets (a fixed number of queries)."""
    from incidents.admin.display import severity_badge, sla_badge, status_badge
    from incidents.selectors import dashboard_summary

    summary = dashboard_summary()
    summary["breached_rows"] = [
        {
            "incident": incident,
            "severity": severity_badge(incident.severity),
            "status": status_badge(incident.status),
            "clock": sla_badge(incident, compact=True),
        }
        for incident in summary["breached"]
    ]
    return summary
