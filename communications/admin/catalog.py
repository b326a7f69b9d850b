"""The status page's catalogue and maintenance in the admin: component groups, components (their
public status changed with a reason, their recent status history shown), maintenance windows
(scheduled, edited and cancelled, started, verified and completed by buttons) and the page's
settings (one row). Every write is a service call (``communications.services.catalog`` and
``.maintenance``), the same the API makes: the same permission checks (the communications lead
edits, a Viewer reads) and validation, a refusal shown on the form with nothing changed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.errors import VigilError
from incidents.models import Source
from incidents.timeformat import when

from ..models import (
    Component,
    ComponentGroup,
    ComponentStatus,
    Maintenance,
    MaintenanceStatus,
    StatusPageSettings,
)
from ..services.catalog import (
    component_add,
    component_edit,
    component_group_create,
    component_group_edit,
    status_page_settings_edit,
)
from ..services.maintenance import (
    ACTIVE,
    ALLOWED_ACTIONS,
    EDITABLE_WHILE_RUNNING,
    maintenance_cancel,
    maintenance_complete,
    maintenance_edit,
    maintenance_schedule,
    maintenance_start,
    maintenance_verify,
)

RECENT_INTERVALS = 20


# --- groups -------------------------------------------------------------------------------------


@admin.register(ComponentGroup)
class ComponentGroupAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="group", create=component_group_create, update=component_group_edit
    )
    list_display = ("name", "position", "members", "description")
    fields = ("name", "description", "position")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("components__service")

    @admin.display(description="Components")
    def members(self, group: ComponentGroup) -> str:
        return ", ".join(component.name for component in group.components.all()) or "—"


# --- components ---------------------------------------------------------------------------------


class ComponentForm(forms.ModelForm):
    reason = forms.CharField(
        required=False,
        max_length=300,
        label="Reason for a status change",
        help_text="Required when you change the status; kept in the component's status history.",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    start_date = forms.DateField(
        required=False, help_text="First day of its uptime history (blank: today)."
    )

    class Meta:
        model = Component
        fields = [
            "service",
            "group",
            "position",
            "description",
            "status",
            "reason",
            "showcase",
            "only_show_if_degraded",
            "start_date",
        ]


def _component_create(*, actor: Any, source: str, reason: str = "", **fields: Any) -> Component:
    # A new component's first interval says "created"; a reason typed on the add form is moot.
    return component_add(actor=actor, source=source, **fields)


STATUS_COLOURS = {
    ComponentStatus.OPERATIONAL: "#1a7f37",
    ComponentStatus.DEGRADED_PERFORMANCE: "#9a6700",
    ComponentStatus.PARTIAL_OUTAGE: "#bc4c00",
    ComponentStatus.MAJOR_OUTAGE: "#cf222e",
    ComponentStatus.UNDER_MAINTENANCE: "#0969da",
}


def _status_badge(status: str) -> str:
    return format_html(
        '<span style="color:{};font-weight:600">{}</span>',
        STATUS_COLOURS.get(status, "inherit"),
        ComponentStatus(status).label if status in ComponentStatus.values else status,
    )


@admin.register(Component)
class ComponentAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="component", create=_component_create, update=component_edit
    )
    form = ComponentForm
    list_display = ("name", "code", "group", "position", "status_badge", "status_changed_at")
    list_filter = ("status", "group", "showcase")
    search_fields = ("service__public_name", "service__slug")
    list_select_related = ("service", "group")

    def get_fields(self, request: HttpRequest, obj: Component | None = None):
        fields = list(self.form.Meta.fields)
        if obj is not None:
            fields += ["status_changed_at", "recent_history"]
        if obj is None or not self.has_change_permission(request, obj):
            fields.remove("reason")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Component | None = None):
        if obj is None:
            return ()
        return ("service", "start_date", "status_changed_at", "recent_history")

    @admin.display(description="Status", ordering="status")
    def status_badge(self, component: Component) -> str:
        return _status_badge(component.status)

    @admin.display(description=f"Recent status history (last {RECENT_INTERVALS})")
    def recent_history(self, component: Component) -> str:
        rows = component.intervals.select_related("actor", "maintenance", "status_update").order_by(
            "-started_at", "-pk"
        )[:RECENT_INTERVALS]
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _status_badge(row.status),
                    when(row.started_at),
                    when(row.ended_at) if row.ended_at else "now",
                    row.actor or "Vigil",
                    row.reason
                    or (f"Maintenance: {row.maintenance}" if row.maintenance_id else "")
                    or (f"Update: {row.status_update}" if row.status_update_id else ""),
                )
                for row in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>Status</th><th>From</th><th>To</th><th>By</th>"
            "<th>Why</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )


# --- maintenance --------------------------------------------------------------------------------


class MaintenanceForm(forms.ModelForm):
    class Meta:
        model = Maintenance
        fields = ["title", "body", "scheduled_for", "scheduled_until", "components"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("scheduled_for"), cleaned.get("scheduled_until")
        if start and end and end <= start:
            self.add_error("scheduled_until", "The window must end after it starts.")
        return cleaned


STEP_SERVICES = {
    "start": maintenance_start,
    "verify": maintenance_verify,
    "complete": maintenance_complete,
    "cancel": maintenance_cancel,
}
STEP_LABELS = {
    "start": "Start now",
    "verify": "Mark as verifying",
    "complete": "Complete now",
    "cancel": "Cancel the maintenance",
}
FINISHED = (MaintenanceStatus.COMPLETED, MaintenanceStatus.CANCELLED)


@admin.register(Maintenance)
class MaintenanceAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="maintenance", create=maintenance_schedule, update=maintenance_edit
    )
    form = MaintenanceForm
    change_form_template = "admin/communications/maintenance/change_form.html"
    list_display = ("title", "status", "scheduled_for", "scheduled_until", "affected")
    list_filter = ("status",)
    search_fields = ("title",)
    date_hierarchy = "scheduled_for"
    filter_horizontal = ("components",)
    actions = ["cancel_selected"]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("components__service")

    def get_fields(self, request: HttpRequest, obj: Maintenance | None = None):
        fields = list(MaintenanceForm.Meta.fields)
        if obj is not None:
            fields += ["status", "started_at", "verifying_at", "completed_at", "public_body"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Maintenance | None = None):
        if obj is None:
            return ()
        steps = ("status", "started_at", "verifying_at", "completed_at", "public_body")
        if obj.status in ACTIVE:
            frozen = [f for f in MaintenanceForm.Meta.fields if f not in EDITABLE_WHILE_RUNNING]
            return (*frozen, *steps)
        return steps

    def has_change_permission(self, request: HttpRequest, obj: Maintenance | None = None):
        if obj is not None and obj.status in FINISHED:
            return False  # a finished window is a record
        return super().has_change_permission(request, obj)

    def has_step_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("communications.change_maintenance")

    @admin.action(description="Cancel the selected maintenance", permissions=["step"])
    def cancel_selected(self, request: HttpRequest, queryset) -> None:
        cancelled, refused = 0, []
        for maintenance in queryset.order_by("pk"):
            if maintenance.status == MaintenanceStatus.CANCELLED:
                continue
            try:
                maintenance_cancel(maintenance=maintenance, actor=request.user, source=Source.ADMIN)
            except VigilError as exc:
                refused.append(f"“{maintenance}”: {exc.message}")
            else:
                cancelled += 1
        self.message_user(request, f"Cancelled {cancelled} maintenance window(s).")
        if refused:
            self.message_user(request, "Not cancelled: " + " ".join(refused), messages.WARNING)

    @admin.display(description="Components")
    def affected(self, maintenance: Maintenance) -> str:
        return ", ".join(c.name for c in maintenance.components.all())

    @admin.display(description="Body as the status page shows it")
    def public_body(self, maintenance: Maintenance) -> str:
        # Rendered and sanitized by communications.markdown when it was saved.
        return mark_safe(maintenance.body_html) or "—"

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path(
                "<path:object_id>/step/<str:action>/",
                self.admin_site.admin_view(require_POST(self.step_view)),
                name="{}_{}_step".format(*info),
            ),
            *super().get_urls(),
        ]

    def step_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if action not in STEP_SERVICES:
            raise PermissionDenied
        if not self.has_step_permission(request):
            raise PermissionDenied
        if not object_id.isdigit():
            raise Http404
        maintenance = get_object_or_404(Maintenance, pk=object_id)
        try:
            STEP_SERVICES[action](maintenance=maintenance, actor=request.user, source=Source.ADMIN)
        except VigilError as exc:
            self.message_user(request, f"Nothing changed: {exc.message}", messages.ERROR)
        else:
            maintenance.refresh_from_db()
            self.message_user(
                request, f"“{maintenance}” is now {maintenance.get_status_display().lower()}."
            )
        return HttpResponseRedirect(
            reverse("admin:communications_maintenance_change", args=[maintenance.pk])
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        if object_id is not None and self.has_step_permission(request):
            maintenance = Maintenance.objects.filter(pk=object_id).first()
            if maintenance is not None:
                extra_context["vigil_steps"] = [
                    {
                        "action": action,
                        "label": STEP_LABELS[action],
                        "url": reverse(
                            "admin:communications_maintenance_step", args=[maintenance.pk, action]
                        ),
                    }
                    for action in ALLOWED_ACTIONS[maintenance.status]
                    if action in STEP_SERVICES
                ]
        return super().changeform_view(request, object_id, form_url, extra_context)


# --- page settings ------------------------------------------------------------------------------


@admin.register(StatusPageSettings)
class StatusPageSettingsAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    """One row: the list goes straight to it."""

    write_services = WriteServices(instance="page", update=status_page_settings_edit)
    fields = ("name", "url", "logo_url", "home_url", "support_url", "time_zone")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        page = StatusPageSettings.objects.order_by("pk").first()
        if page is None or not self.has_view_or_change_permission(request):
            return super().changelist_view(request, extra_context)
        return HttpResponseRedirect(
            reverse("admin:communications_statuspagesettings_change", args=[page.pk])
        )
