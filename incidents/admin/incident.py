"""The incident admin: the list that answers "what needs me now", the add and change pages,
and list actions. Every write goes through the services with ``source="admin"``; the list's
rows, columns and actions live in ``incident_rows``, the page's buttons, notes, roles and
report in ``workspace``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.widgets import AdminTextareaWidget
from django.db import models
from django.http import HttpRequest
from django.shortcuts import redirect
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from ..errors import VigilError
from ..models import ACTIVE_STATUSES, Incident, ResponseRole, Source, Status
from ..services import incident_create, incident_edit
from ..services.incidents import (
    CORRECTABLE_FIELDS,
    CORRECTION_PERMISSION,
    EDITABLE_FIELDS,
    FINAL_STATUSES,
    TIMING_FIELDS,
)
from ..services.policy import incident_policy_get
from . import display as ui
from .common import NoRevertMixin
from .extensions import incident_page_inlines
from .filters import (
    BreachedFilter,
    MineFilter,
    PriorityFilter,
    ServiceFilter,
    StatusFilter,
)
from .forms import ROLE_FIELD_PREFIX, IncidentAddForm, IncidentForm
from .incident_rows import IncidentRowsMixin
from .workspace import IncidentWorkspaceMixin, lookup_incident

ADD_FIELDSETS = [
    (
        None,
        {
            "fields": [
                "title",
                "severity",
                ("impact", "urgency"),
                "priority_reason",
                "detection_source",
                "services",
                "customer_facing",
                "affected_users",
                "summary",
                "business_impact",
                ("impact_started_at", "detected_at"),
            ]
        },
    ),
]
CHANGE_READONLY = [
    "number",
    "status_display",
    "priority_display",
    "sla_display",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "cancelled_at",
    "response_due_at",
    "resolution_due_at",
    "cancel_reason",
    "duplicate_link",
    "created_by",
    "created_at",
    "updated_at",
]


def _role_keys() -> list[str]:
    return list(ResponseRole.objects.values_list("key", flat=True))


class _ServiceRejected(Exception):
    """A service refused the form's save; carries the refusal to the re-rendered form."""

    def __init__(self, error: VigilError) -> None:
        super().__init__(error.message)
        self.error = error


@admin.register(Incident)
class IncidentAdmin(IncidentRowsMixin, IncidentWorkspaceMixin, NoRevertMixin, SimpleHistoryAdmin):
    form = IncidentForm
    list_display = (
        "number",
        "title",
        "severity_badge",
        "status_badge",
        "priority_label",
        "age",
        "sla",
        "service_names",
        "incident_manager",
    )
    # One link a row: each costs a URL reverse and, with filters on, a resolve.
    list_display_links = ("number",)
    list_filter = (
        StatusFilter,
        MineFilter,
        "severity",
        PriorityFilter,
        BreachedFilter,
        ServiceFilter,
        "customer_facing",
    )
    list_select_related = ("severity",)
    sortable_by = (
        "number",
        "title",
        "severity_badge",
        "status_badge",
        "priority_label",
        "age",
        "sla",
    )
    # incident_search reads the title and the role holders' names; a field here shows the box.
    search_fields = ("title",)
    search_help_text = (
        "Search every status by incident ID (INC-YYYY-MMDD-XXX, or part of it), title words "
        "or the name of someone holding a role."
    )
    # The paginator still counts the filtered rows; this skips a second, unfiltered count.
    show_full_result_count = False
    list_per_page = 50
    autocomplete_fields = ("services",)
    formfield_overrides = {
        models.TextField: {"widget": AdminTextareaWidget(attrs={"rows": 4, "cols": 80})}
    }
    view_on_site = False
    actions = ("acknowledge_selected", "investigate_selected", "close_selected")

    # --- permissions ------------------------------------------------------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: Incident | None = None) -> bool:
        # Incidents are a record: false alarms and duplicates are cancelled, never deleted.
        return False

    def _can_change_severity(self, request: HttpRequest, obj: Incident) -> bool:
        # Frozen once resolved, with the SLA clocks it set (incident_change_severity).
        return (
            request.user.has_perm("incidents.change_incident_severity")
            and obj.status in ACTIVE_STATUSES
            and self.has_change_permission(request, obj)
        )

    def _can_correct(self, request: HttpRequest, obj: Incident) -> bool:
        return (
            obj.status in FINAL_STATUSES
            and request.user.has_perm(CORRECTION_PERMISSION)
            and self.has_change_permission(request, obj)
        )

    def _can_set_priority(self, request: HttpRequest, obj: Incident) -> bool:
        # Impact and urgency change until closure; a closed incident's priority is a record.
        return obj.status not in FINAL_STATUSES and self.has_change_permission(request, obj)

    def _frozen_fields(self, request: HttpRequest, obj: Incident) -> list[str]:
        """Details shown read-only in this status for this user: what incident_update would
        refuse (the services decide; this keeps the form from offering it)."""
        if obj.status in ACTIVE_STATUSES:
            return []
        if obj.status not in FINAL_STATUSES:
            return list(TIMING_FIELDS)
        if self._can_correct(request, obj):
            return [name for name in EDITABLE_FIELDS if name not in CORRECTABLE_FIELDS]
        return list(EDITABLE_FIELDS)

    def _status_rule(self, request: HttpRequest, obj: Incident) -> str | None:
        if obj.status == Status.RESOLVED:
            return (
                "Resolved: the SLA clocks have stopped, so the detection and impact start "
                "times and the severity no longer change (reopen the incident to change "
                "them). The report fields can still be completed."
            )
        if obj.status in FINAL_STATUSES:
            if self._can_correct(request, obj):
                return (
                    f"{Status(obj.status).label}: only the report (summary, affected users, "
                    "business impact, root cause, resolution, lessons learned) may be "
                    "corrected, with a reason, which is written on the timeline."
                )
            return (
                f"{Status(obj.status).label}: the incident is a record. Only someone who may "
                "close incidents (the Incident Manager) can correct its report."
            )
        return None

    # --- the incident page ------------------------------------------------------------------------

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Incident | None:
        queryset = self.get_queryset(request).select_related("created_by", "duplicate_of")
        return lookup_incident(queryset, object_id, from_field)

    def get_fieldsets(self, request: HttpRequest, obj: Incident | None = None):
        if obj is None:
            roles = [f"{ROLE_FIELD_PREFIX}{key}" for key in _role_keys()]
            return [
                *ADD_FIELDSETS,
                (
                    "Response roles",
                    {
                        "fields": roles,
                        "description": (
                            "Each list shows everyone who may hold a role, the members of the "
                            "role's group first."
                            if request.GET.get("everyone") == "1"
                            else "Each list shows the members of the role's group. "
                            '<a href="?everyone=1">Show everyone</a> who may hold a role.'
                        ),
                    },
                ),
            ]
        first: list[Any] = [
            "number",
            "title",
            ("severity", "status_display"),
            ("impact", "urgency", "priority_display"),
        ]
        if self._can_change_severity(request, obj):
            first.append("severity_change_reason")
        if self._can_correct(request, obj):
            first.append("correction_reason")
        if self._can_set_priority(request, obj):
            first.append("priority_reason")
        rule = self._status_rule(request, obj)
        fieldsets: list[Any] = [
            (None, {"fields": first, **({"description": rule} if rule else {})}),
            (
                "Detection and impact",
                {
                    "fields": [
                        "detection_source",
                        "services",
                        "customer_facing",
                        "affected_users",
                        "summary",
                        "business_impact",
                    ]
                },
            ),
            ("Analysis", {"fields": ["root_cause", "resolution", "lessons_learned"]}),
            (
                "Times and targets",
                {
                    "fields": [
                        "sla_display",
                        ("impact_started_at", "detected_at"),
                        ("acknowledged_at", "mitigated_at"),
                        ("resolved_at", "closed_at"),
                        ("response_due_at", "resolution_due_at"),
                    ]
                },
            ),
        ]
        if obj.status == Status.CANCELLED:
            fieldsets.append(
                ("Cancellation", {"fields": ["cancelled_at", "cancel_reason", "duplicate_link"]})
            )
        fieldsets.append(
            (
                "Record",
                {"classes": ["collapse"], "fields": ["created_by", "created_at", "updated_at"]},
            )
        )
        return fieldsets

    def get_inlines(self, request: HttpRequest, obj: Incident | None = None):
        # Inlines other apps register describe an existing incident (its escalation, its
        # notifications); logging a new one is just its details.
        if obj is None:
            return []
        return [*super().get_inlines(request, obj), *incident_page_inlines()]

    def get_readonly_fields(self, request: HttpRequest, obj: Incident | None = None):
        if obj is None:
            return ()
        fields = [*CHANGE_READONLY, *self._frozen_fields(request, obj)]
        if not self._can_change_severity(request, obj):
            fields.append("severity")
        return fields

    def get_form(self, request: HttpRequest, obj: Incident | None = None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = IncidentAddForm.with_roles(
                declarer_manages=incident_policy_get().declarer_is_incident_manager,
                everyone=request.GET.get("everyone") == "1",
            )
        else:
            # A declared field not in the fieldsets would otherwise stay in the form.
            dropped = {}
            if not self._can_change_severity(request, obj):
                dropped["severity_change_reason"] = None
            if not self._can_correct(request, obj):
                dropped["correction_reason"] = None
            if not self._can_set_priority(request, obj):
                dropped["priority_reason"] = None
            if dropped:
                kwargs["form"] = type("IncidentForm", (IncidentForm,), dropped)
        form = super().get_form(request, obj, change=change, **kwargs)
        rejection = getattr(request, "_vigil_rejection", None)
        if rejection is not None:
            form = type(form.__name__, (form,), {"rejection": rejection})
        return form

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "title" and formfield is not None:
            formfield.widget.attrs["class"] = "vLargeTextField"
        if db_field.name == "severity" and formfield is not None:
            # Severity levels are policy, edited on their own page, not from an incident.
            formfield.widget.can_add_related = False
            formfield.widget.can_change_related = False
            formfield.widget.can_delete_related = False
            formfield.widget.can_view_related = False
        return formfield

    @admin.display(description="Status")
    def status_display(self, obj: Incident) -> str:
        return format_html(
            '{} <span class="vigil-muted">report status: {}</span>',
            ui.status_badge(obj.status),
            obj.report_status,
        )

    @admin.display(description="Priority")
    def priority_display(self, obj: Incident) -> str:
        return format_html(
            'P{} <span class="vigil-muted">from urgency × impact (priority matrix)</span>',
            obj.priority,
        )

    @admin.display(description="Targets")
    def sla_display(self, obj: Incident) -> str:
        return ui.sla_badge(obj)

    @admin.display(description="Duplicate of")
    def duplicate_link(self, obj: Incident) -> str:
        if obj.duplicate_of is None:
            return "–"
        return format_html(
            '<a href="{}">{}</a>', self._url("change", obj.duplicate_of), obj.duplicate_of
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _ServiceRejected as rejected:
            # The admin's transaction has rolled back, so nothing changed. Show the same
            # submission again, now with the refusal on the fields it names.
            request._vigil_rejection = rejected.error
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Incident, form, change: bool) -> None:
        try:
            if change:
                self._save_changes(request, obj, form)
            else:
                created = incident_create(
                    actor=request.user, source=Source.ADMIN, **self._create_kwargs(form)
                )
                # The admin goes on with ``obj`` (log entry, message, redirect).
                for field in Incident._meta.concrete_fields:
                    setattr(obj, field.attname, getattr(created, field.attname))
                obj._state.adding = False
        except VigilError as exc:
            raise _ServiceRejected(exc) from exc

    def save_related(self, request, form, formsets, change) -> None:
        # Affected services were written by incident_create / incident_update; the form's
        # own m2m save would write them a second time, around the audit. Inlines other apps
        # register are read-only; saving them records that nothing changed.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def _create_kwargs(self, form: IncidentAddForm) -> dict[str, Any]:
        data = form.cleaned_data
        return {
            "title": data["title"],
            "severity": data["severity"],
            "impact": data["impact"],
            "urgency": data["urgency"],
            "summary": data.get("summary", ""),
            "detection_source": data["detection_source"],
            "services": list(data.get("services") or []),
            "customer_facing": form.customer_facing_choice,
            "affected_users": data.get("affected_users"),
            "business_impact": data.get("business_impact", ""),
            "impact_started_at": data.get("impact_started_at"),
            "detected_at": data.get("detected_at"),
            "priority_reason": (data.get("priority_reason") or "").strip(),
            "roles": form.roles,
        }

    def _save_changes(self, request: HttpRequest, obj: Incident, form: IncidentForm) -> None:
        editable = (*EDITABLE_FIELDS, "severity")
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in editable}
        if "services" in changes:
            changes["services"] = list(changes["services"])
        incident_edit(
            incident=obj,
            actor=request.user,
            source=Source.ADMIN,
            changes=changes,
            severity_reason=(form.cleaned_data.get("severity_change_reason") or "").strip(),
            correction_reason=(form.cleaned_data.get("correction_reason") or "").strip(),
            priority_reason=(form.cleaned_data.get("priority_reason") or "").strip(),
        )

    def response_add(self, request, obj, post_url_continue=None):
        if "_addanother" in request.POST or IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # A new incident's next stop is its own page: roles, notes, actions.
        self.message_user(
            request, f"{obj.number} logged. Assign the response roles below.", messages.SUCCESS
        )
        return redirect(self._url("change", obj))
