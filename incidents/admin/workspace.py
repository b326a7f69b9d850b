"""The incident page's workspace: lifecycle buttons, timeline and notes, response roles and
the §6.2 report, each a small endpoint beside the admin's change view. This module builds the
page, its live fragments and the report, and routes the endpoints; those that write (actions,
notes, roles) are in ``workspace_actions``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import content_disposition_header

from ..models import Incident, ResponseRole, Status
from ..selectors import (
    actions_available,
    incident_list,
    incident_manager_of,
    incident_report,
)
from . import cockpit
from . import display as ui
from .extensions import incident_page_panels
from .forms import TRANSITION_FORMS, NoteForm, role_holder_ids
from .report import report_context
from .workspace_actions import ACTION_HELP, ACTION_LABELS, IncidentActionsMixin, action_auto_id

logger = logging.getLogger(__name__)

INCIDENT_ID = re.compile(r"^\s*INC-\d{4}-\d{4}-\d{3,}\s*$", re.IGNORECASE)


class IncidentWorkspaceMixin(IncidentActionsMixin):
    """The endpoints and context of the incident page (mixed into ``IncidentAdmin``)."""

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if change and obj is not None and obj.pk:
            context["vigil"] = self._workspace(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _workspace(self, request: HttpRequest, incident: Incident) -> dict[str, Any]:
        user = request.user
        # A refused in-place action comes back with its form bound, errors shown, left open.
        opened_action, opened_form = getattr(request, "_vigil_open", (None, None))
        actions = []
        for name in actions_available(incident, user):
            form_class = TRANSITION_FORMS.get(name)
            form = None
            if form_class is not None:
                form = (
                    opened_form
                    if name == opened_action
                    else form_class(incident=incident, auto_id=action_auto_id(name))
                )
            actions.append(
                {
                    "name": name,
                    "label": ACTION_LABELS[name].rstrip("…") + ("…" if form is not None else ""),
                    "help": ACTION_HELP[name],
                    "url": self._url("transition", incident, name),
                    "needs_input": form is not None,
                    "form": form,
                    "open": name == opened_action,
                }
            )
        can_assign = user.has_perm("incidents.assign_incident_roles")
        panels = incident_page_panels(request=request, incident=incident)
        timeline = cockpit.timeline_context(incident, params=request.GET)
        live_url = self._url("live", incident)
        return {
            "incident": incident,
            "actions": actions,
            "header": cockpit.header_context(request, incident),
            "live_header_url": f"{live_url}?part=header&status={incident.status}",
            "live_timeline_url": f"{live_url}?part=timeline",
            "change_url": self._url("change", incident),
            "severity": ui.severity_badge(incident.severity),
            "status": ui.status_badge(incident.status),
            "sla": ui.sla_badge(incident),
            "age": ui.age_text(incident),
            "incident_manager": ui.person(incident_manager_of(incident)),
            "roles": self._role_rows(
                incident, with_choices=can_assign, everyone=request.GET.get("everyone") == "1"
            ),
            "can_assign": can_assign,
            "role_url": self._url("role", incident),
            "timeline": timeline,
            "can_note": user.has_perm("incidents.add_timelineentry"),
            "note_form": NoteForm(),
            "note_url": self._url("note", incident),
            "report_url": self._url("report", incident),
            "panels": [p for p in panels if p["placement"] != "side"],
            "side_panels": [p for p in panels if p["placement"] == "side"],
        }

    def live_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A fragment of the incident page for htmx to refresh: ``part=header`` (the sticky
        header's facts) or ``part=timeline`` (the entries, for the filter and order asked;
        204 when nothing arrived since ``last``). Needs the page's own permission."""
        part = request.GET.get("part")
        if part not in ("header", "timeline"):
            raise Http404("Unknown part of the incident page.")
        incident = self._incident_for(
            request, object_id, incident_list().select_related("severity")
        )
        live_url = self._url("live", incident)
        if part == "header":
            # The status the page was opened in: its actions are that status's.
            page_status = request.GET.get("status", "")
            if page_status not in Status.values:
                page_status = incident.status
            context = {
                "vigil": {
                    "incident": incident,
                    "header": cockpit.header_context(request, incident),
                    "live_header_url": f"{live_url}?part=header&status={page_status}",
                    "change_url": self._url("change", incident),
                },
                "page_status": page_status,
            }
            template = "admin/incidents/incident/includes/header_facts.html"
        else:
            timeline = cockpit.timeline_context(incident, params=request.GET)
            last = request.GET.get("last")
            if last is not None and last == str(timeline["newest"]):
                return HttpResponse(status=204)
            context = {
                "vigil": {
                    "incident": incident,
                    "timeline": timeline,
                    "live_timeline_url": f"{live_url}?part=timeline",
                    "change_url": self._url("change", incident),
                }
            }
            template = "admin/incidents/incident/includes/timeline_entries.html"
        response = TemplateResponse(request, template, context)
        response["Cache-Control"] = "no-store"
        return response

    def _role_rows(
        self, incident: Incident, *, with_choices: bool, everyone: bool = False
    ) -> list[dict[str, Any]]:
        """The response roles, who holds each and, for those who may assign, the choices: the
        members of the role's group, and everyone else who may hold a role only when asked
        (``everyone``), when the group has no members, or for the one who holds it now."""
        holders = {a.role_id: a for a in incident.role_assignments.all()}
        roles = list(ResponseRole.objects.all())
        users: list[Any] = []
        may_hold: set[int] = set()
        if with_choices:
            # Read-only Viewers cannot hold a role; they are not offered.
            may_hold = role_holder_ids()
            users = list(
                get_user_model()
                .objects.filter(is_active=True)
                .order_by("first_name", "last_name", get_user_model().USERNAME_FIELD)
                .prefetch_related(Prefetch("groups", queryset=Group.objects.only("pk")))
            )
        rows = []
        for role in roles:
            assignment = holders.get(role.pk)
            row: dict[str, Any] = {
                "role": role,
                "holder": ui.person(assignment.user) if assignment else "",
                "holder_id": assignment.user_id if assignment else None,
                "assigned_at": assignment.assigned_at if assignment else None,
            }
            if with_choices:
                # Members of the role's group first: they hold its permissions.
                members = [
                    (u.pk, ui.person(u))
                    for u in users
                    if role.group_id and any(g.pk == role.group_id for g in u.groups.all())
                ]
                member_ids = {pk for pk, _ in members}
                row["members"] = members
                others = [
                    (u.pk, ui.person(u))
                    for u in users
                    if u.pk not in member_ids and u.pk in may_hold
                ]
                shown = everyone or not members
                row["others"] = [
                    o for o in others if shown or (assignment and o[0] == assignment.user_id)
                ]
                row["hidden_others"] = len(others) - len(row["others"])
                row["group_name"] = role.name
            rows.append(row)
        return rows

    # --- the page's own endpoints: lifecycle buttons, notes, roles, report ---------------------

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        custom = [
            path(
                "<path:object_id>/transition/<str:action>/",
                wrap(self.transition_view),
                name=f"{prefix}_transition",
            ),
            path("<path:object_id>/note/", wrap(self.note_view), name=f"{prefix}_note"),
            path("<path:object_id>/role/", wrap(self.role_view), name=f"{prefix}_role"),
            path("<path:object_id>/report/", wrap(self.report_view), name=f"{prefix}_report"),
            path(
                "<path:object_id>/live/",
                self._live_guard(wrap(self.live_view)),
                name=f"{prefix}_live",
            ),
        ]
        return custom + super().get_urls()

    def _live_guard(self, view):
        """A page left open after its session ended polls on: tell htmx to stop (status 286)
        instead of swapping the login page into the header."""

        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if getattr(request, "htmx", False) and not self.admin_site.has_permission(request):
                return HttpResponse(status=286)
            return view(request, *args, **kwargs)

        return guarded

    def _url(self, name: str, incident: Incident, *args: Any) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=[incident.pk, *args],
            current_app=self.admin_site.name,
        )

    def _incident_for(self, request: HttpRequest, object_id: str, queryset=None) -> Incident:
        incident = lookup_incident(
            queryset if queryset is not None else Incident.objects.select_related("severity"),
            unquote(object_id),
        )
        if incident is None:
            raise Http404("No such incident.")
        if not self.has_view_or_change_permission(request, incident):
            raise PermissionDenied
        return incident

    def report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident_for(request, object_id, Incident.objects.only("pk", "number"))
        context = report_context(incident_report(incident=incident))
        if request.GET.get("format") == "md":
            text = render_to_string("incidents/report.md", context)
            text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
            response = HttpResponse(text, content_type="text/markdown; charset=utf-8")
            response["Content-Disposition"] = content_disposition_header(
                True, f"{incident.number}.md"
            )
            return response
        report_incident = context["incident"]
        context.update(
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Incident report {report_incident.number}",
                "subtitle": report_incident.title,
                "original": report_incident,
                "change_url": self._url("change", report_incident),
                "markdown_url": self._url("report", report_incident) + "?format=md",
                "pdf_url": self._url("report", report_incident) + "?format=pdf",
                "severity_badge": ui.severity_badge(report_incident.severity),
                "status_badge": ui.status_badge(report_incident.status),
            }
        )
        if request.GET.get("format") == "pdf":
            return self._report_pdf(request, context)
        return TemplateResponse(request, "admin/incidents/incident/report.html", context)

    def _report_pdf(self, request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
        """The report page laid out as PDF (its print styles), or back to the page with an
        error when this server cannot make PDFs."""
        from .report_pdf import PdfUnavailable, report_pdf

        incident = context["incident"]
        # The page's own template, on a base of its own: the report without the admin's chrome.
        html = render_to_string(
            "admin/incidents/incident/report.html",
            {**context, "as_pdf": True, "base_template": "incidents/report_pdf_base.html"},
            request=request,
        )
        try:
            pdf = report_pdf(html=html, base_url=request.build_absolute_uri("/"))
        except PdfUnavailable:
            logger.exception("No PDF of the report of %s", incident.number)
            messages.error(
                request,
                "This server cannot make PDFs (WeasyPrint or the Pango library is missing); "
                "download the Markdown or print the page instead.",
            )
            return redirect(self._url("report", incident))
        response = HttpResponse(pdf, content_type="application/pdf")
        response["Content-Disposition"] = content_disposition_header(True, f"{incident.number}.pdf")
        return response


def lookup_incident(queryset: QuerySet[Incident], object_id: str, from_field: str | None = None):
    """An incident by primary key, or by its ID (INC-...), so pasted IDs work in URLs."""
    model = queryset.model
    field = model._meta.pk if from_field is None else model._meta.get_field(from_field)
    try:
        return queryset.get(**{field.name: field.to_python(object_id)})
    except (model.DoesNotExist, ValidationError, ValueError):
        pass
    if from_field is None and INCIDENT_ID.match(str(object_id)):
        return queryset.filter(number=str(object_id).strip().upper()).first()
    return None
