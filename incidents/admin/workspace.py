"""The incident page's workspace: lifecycle buttons, timeline and notes, response roles and
the §6.2 report, each a small endpoint beside the admin's change view that calls one service
with ``source="admin"``. A service's refusal becomes a message or a form error; nothing changes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import content_disposition_header

from ..errors import ActionForbidden, GuardFailed, InvalidInput, TransitionNotAllowed, VigilError
from ..models import Incident, ResponseRole, Source, Status
from ..selectors import (
    ACTIONS,
    actions_available,
    incident_list,
    incident_manager_of,
    incident_report,
)
from ..services import (
    incident_close_with_report,
    incident_note_add,
    incident_roles_assign,
    incident_transition,
)
from ..services.lifecycle import action_permission
from . import cockpit
from . import display as ui
from .extensions import incident_page_panels
from .forms import TRANSITION_FORMS, NoteForm, RoleAssignForm, attach_errors, role_holder_ids
from .report import report_context

logger = logging.getLogger(__name__)

ACTION_LABELS = {
    "acknowledge": "Acknowledge",
    "investigate": "Investigate",
    "mitigate": "Mitigate",
    "monitor": "Monitor",
    "resolve": "Resolve…",
    "reopen": "Reopen…",
    "close": "Close",
    "cancel": "Cancel…",
}
ACTION_HELP = {
    "acknowledge": "Someone is on it: stops the acknowledgement timer.",
    "investigate": "Investigating the cause.",
    "mitigate": "Applying a fix or containment.",
    "monitor": "Impact mitigated; watching the fix.",
    "resolve": "Service restored. Needs the resolution.",
    "reopen": "The fix did not hold.",
    "close": "Done: needs summary, root cause, resolution and business impact.",
    "cancel": "A false alarm, or a duplicate of another incident.",
}
ACTION_DONE = {
    "acknowledge": "acknowledged",
    "investigate": "moved to investigating",
    "mitigate": "moved to mitigating",
    "monitor": "moved to monitoring",
    "resolve": "resolved",
    "reopen": "reopened",
    "close": "closed",
    "cancel": "cancelled",
}
INCIDENT_ID = re.compile(r"^\s*INC-\d{4}-\d{4}-\d{3,}\s*$", re.IGNORECASE)


def action_auto_id(action: str) -> str:
    """HTML ids of an action's form fields: apart from the details form's on the same page."""
    return f"id_{action}_%s"


def field_label(name: str) -> str:
    try:
        return str(Incident._meta.get_field(name).verbose_name).capitalize()
    except FieldDoesNotExist:
        return name.replace("_", " ").capitalize()


def error_text(error: VigilError) -> str:
    """A domain error as staff should read it; a failed guard names the missing fields."""
    if isinstance(error, GuardFailed):
        fields = ", ".join(field_label(name) for name in error.errors)
        return f"Cannot {error.action} yet: fill in {fields} first."
    return error.message


class IncidentWorkspaceMixin:
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

    def transition_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if action not in ACTIONS:
            raise Http404(f"Unknown action {action!r}.")
        incident = self._incident_for(request, object_id)
        change_url = self._url("change", incident)
        form_class = TRANSITION_FORMS.get(action)
        if request.method != "POST":
            if form_class is None:
                return redirect(change_url)
            refusal = _refusal(incident, action, request.user)
            if refusal:
                messages.error(request, refusal)
                return redirect(change_url)
            return self._transition_page(request, incident, action, form_class(incident=incident))

        form = None
        if form_class is not None:
            form = form_class(request.POST, incident=incident, auto_id=action_auto_id(action))
        if form is not None and not form.is_valid():
            return self._refused(request, incident, action, form)
        before = incident.status
        # Closing saves the report fields the form completed in the same transaction.
        service = incident_close_with_report if action == "close" else incident_transition
        params = {"action": action} if action != "close" else {}
        try:
            result = service(
                incident=incident,
                actor=request.user,
                source=Source.ADMIN,
                **params,
                **(form.service_params() if form is not None else {}),
            )
        except (InvalidInput, GuardFailed) as exc:
            if form is not None:
                attach_errors(form, exc)
                return self._refused(request, incident, action, form)
            messages.error(request, error_text(exc))
            return redirect(change_url)
        except VigilError as exc:
            messages.error(request, error_text(exc))
            return redirect(change_url)
        if result.status == before:
            messages.info(
                request,
                f"{result.number} is already {Status(result.status).label.lower()}; "
                "nothing changed.",
            )
        else:
            change = f"{Status(before).label} → {Status(result.status).label}"
            self.log_change(request, result, f"{ACTION_LABELS[action].rstrip('…')}: {change}")
            messages.success(request, f"{result.number}: {change}.")
        return redirect(change_url)

    def _refused(self, request, incident, action, form) -> HttpResponse:
        """A refused action asked for in place: the incident page again, nothing saved, with
        the action's form open and its errors on it (or the action's own page when it was
        asked for there)."""
        if request.POST.get("_from") != "page":
            return self._transition_page(request, incident, action, form)
        request._vigil_open = (action, form)
        # The page as a GET would show it (the POST was this action's, not the details form's).
        method, request.method = request.method, "GET"
        try:
            # Its forms post to the incident page, not back to this action.
            response = self.change_view(
                request, str(incident.pk), form_url=self._url("change", incident)
            )
        finally:
            request.method = method
        return response

    def _transition_page(self, request, incident, action, form) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{ACTION_LABELS[action].rstrip('…')} {incident.number}",
            "subtitle": incident.title,
            "incident": incident,
            "action": action,
            "action_label": ACTION_LABELS[action].rstrip("…"),
            "action_help": ACTION_HELP[action],
            "form": form,
            "change_url": self._url("change", incident),
            "status": ui.status_badge(incident.status),
            "severity": ui.severity_badge(incident.severity),
        }
        return TemplateResponse(request, "admin/incidents/incident/transition_form.html", context)

    def note_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident_for(request, object_id)
        target = self._url("change", incident) + "#timeline"
        form = NoteForm(request.POST)
        if not form.is_valid():
            messages.error(request, _form_errors(form))
            return redirect(target)
        try:
            incident_note_add(
                incident=incident,
                actor=request.user,
                source=Source.ADMIN,
                body=form.cleaned_data["body"],
                kind=form.cleaned_data["kind"],
            )
        except VigilError as exc:
            messages.error(request, error_text(exc))
        else:
            kind = "Decision" if form.cleaned_data["kind"] == "decision" else "Note"
            messages.success(request, f"{kind} added to the timeline of {incident.number}.")
        return redirect(target)

    def role_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident_for(request, object_id)
        target = self._url("change", incident) + "#roles"
        form = RoleAssignForm(request.POST)
        if not form.is_valid():
            messages.error(request, _form_errors(form))
            return redirect(target)
        role, user = form.cleaned_data["role"], form.cleaned_data["user"]
        try:
            incident_roles_assign(
                incident=incident,
                actor=request.user,
                source=Source.ADMIN,
                assignments={role: user},
            )
        except VigilError as exc:
            messages.error(request, error_text(exc))
        else:
            who = ui.person(user) if user is not None else "nobody"
            messages.success(request, f"{role.name} on {incident.number}: {who}.")
        return redirect(target)

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


def _refusal(incident: Incident, action: str, user: Any) -> str:
    """Why ``user`` cannot start ``action`` now, in the services' words ("" if they can)."""
    if not (user.is_active and user.has_perm(action_permission(action))):
        return ActionForbidden(action=action, user=user).message
    if action not in actions_available(incident):
        allowed = actions_available(incident, user)
        return TransitionNotAllowed(action=action, status=incident.status, allowed=allowed).message
    return ""


def _form_errors(form) -> str:
    parts = []
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        text = " ".join(str(e) for e in errors)
        parts.append(f"{label}: {text}" if label else text)
    return " ".join(parts)
