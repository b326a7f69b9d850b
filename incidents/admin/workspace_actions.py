"""The incident page's actions: the lifecycle buttons (with the forms some of them need), notes
and role assignments, each an endpoint that calls one service with ``source="admin"``, and how
actions and a service's refusals read to staff. A refusal becomes a message or a form error;
nothing changes."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import FieldDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from ..errors import ActionForbidden, GuardFailed, InvalidInput, TransitionNotAllowed, VigilError
from ..models import Incident, Source, Status
from ..selectors import ACTIONS, actions_available
from ..services import (
    incident_close_with_report,
    incident_note_add,
    incident_roles_assign,
    incident_transition,
)
from ..services.lifecycle import action_permission
from . import display as ui
from .forms import TRANSITION_FORMS, NoteForm, RoleAssignForm, attach_errors

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


class IncidentActionsMixin:
    """The incident page's action endpoints (mixed into ``IncidentAdmin`` through
    ``IncidentWorkspaceMixin``, which gives them their URLs)."""

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
