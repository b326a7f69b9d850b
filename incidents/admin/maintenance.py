"""Maintenance windows and routing rules in the admin.

Maintenance windows have their own list (reason, target, times, whether active now) and
add/change form; the integration list offers "Put in maintenance for 1 h / 4 h". Routing rules
are an inline of the integration's change page. Every write goes through the services of
``incidents.detection.maintenance`` and ``incidents.detection.routing``, which need
``incidents.change_integration`` (held by no role group: administrators).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from ..detection.maintenance import (
    maintenance_window_create,
    maintenance_window_delete,
    maintenance_window_update,
    window_target,
)
from ..detection.routing import (
    ROUTING_RULE_FIELDS,
    routing_match_errors,
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
)
from ..errors import VigilError
from ..models import Integration, MaintenanceWindow, RoutingRule, Source
from ..timeformat import when
from .common import NoRevertMixin, ServiceRejected, ServiceWriteAdminMixin, WriteServices

MANAGE = "incidents.change_integration"
VIEW = "incidents.view_integration"


def _can_manage(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.has_perm(MANAGE)


# --- maintenance windows --------------------------------------------------------------------------


class MaintenanceWindowForm(forms.ModelForm):
    """Checks what staff type with the services' rules, so mistakes show on their fields."""

    class Meta:
        model = MaintenanceWindow
        fields = ["reason", "integration", "service", "starts_at", "ends_at"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        adding = self.instance.pk is None
        if adding and not (cleaned.get("integration") or cleaned.get("service")):
            self.add_error(
                "integration",
                "Choose the integration or the service (or both) to put in maintenance.",
            )
        starts_at = cleaned.get("starts_at", self.instance.starts_at)
        ends_at = cleaned.get("ends_at")
        if starts_at and ends_at:
            if ends_at <= starts_at:
                self.add_error("ends_at", "The window must end after it starts.")
            elif adding and ends_at <= timezone.now():
                self.add_error("ends_at", "This window would already have ended.")
        return cleaned


class WindowStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active now"), ("upcoming", "Upcoming"), ("ended", "Ended")]

    def queryset(self, request, queryset):
        value, now = self.value(), timezone.now()
        if value is None:
            return queryset
        if value == "active":
            return queryset.filter(starts_at__lte=now, ends_at__gt=now)
        if value == "upcoming":
            return queryset.filter(starts_at__gt=now)
        if value == "ended":
            return queryset.filter(ends_at__lte=now)
        raise IncorrectLookupParameters(f"Unknown state {value!r}.")


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    """A window that has ended is shown, not changed: the alerts it recorded name it."""

    write_services = WriteServices(
        instance="window",
        create=maintenance_window_create,
        update=maintenance_window_update,
        delete=maintenance_window_delete,
    )
    form = MaintenanceWindowForm
    list_display = ("reason", "target", "starts_at", "ends_at", "active_now", "created_by")
    list_filter = (WindowStateFilter, "integration", "service")
    list_select_related = ("integration", "service", "created_by")
    search_fields = ("reason",)
    ordering = ("-starts_at", "-id")
    readonly_fields = ("created_by", "created_at")
    fieldsets = [
        (None, {"fields": ["reason"]}),
        (
            "What is in maintenance",
            {
                "fields": ["integration", "service"],
                "description": (
                    "An integration: its alerts. A service: the alerts routed to it from every "
                    "integration. Both: that integration's alerts routed to that service."
                ),
            },
        ),
        ("When", {"fields": ["starts_at", "ends_at"]}),
        ("Record", {"fields": ["created_by", "created_at"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: MaintenanceWindow | None = None):
        # Times are typed and shown in the server's zone; a new window has no record yet.
        zone = f"Times in {timezone.get_current_timezone_name()}."
        return [
            (name, {**options, "description": zone} if name == "When" else options)
            for name, options in self.fieldsets
            if obj is not None or name != "Record"
        ]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        now = timezone.localtime().replace(second=0, microsecond=0)
        initial = {"starts_at": now, "ends_at": now + timedelta(hours=1)}
        return {**initial, **super().get_changeform_initial_data(request)}

    def get_readonly_fields(self, request: HttpRequest, obj: MaintenanceWindow | None = None):
        if obj is None:
            return self.readonly_fields
        fixed = ["integration", "service", *self.readonly_fields]
        if obj.starts_at <= timezone.now():
            fixed.insert(0, "starts_at")
        return fixed

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.ends_at <= timezone.now():
            return False
        return super().has_change_permission(request, obj) and _can_manage(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return super().has_add_permission(request, *args) and _can_manage(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and _can_manage(request)

    @admin.display(description="Target")
    def target(self, obj: MaintenanceWindow) -> str:
        return window_target(obj)

    @admin.display(description="Active now", boolean=True)
    def active_now(self, obj: MaintenanceWindow) -> bool:
        return obj.starts_at <= timezone.now() < obj.ends_at


# --- "put in maintenance" on the integration list -------------------------------------------------


def _put_in_maintenance(modeladmin, request: HttpRequest, queryset, hours: int) -> None:
    now = timezone.now()
    ends_at = now + timedelta(hours=hours)
    done, failures = 0, []
    for integration in queryset.order_by("pk"):
        try:
            maintenance_window_create(
                actor=request.user,
                source=Source.ADMIN,
                now=now,
                reason=f"Put in maintenance for {hours} h from the integration list",
                integration=integration,
                starts_at=now,
                ends_at=ends_at,
            )
            done += 1
        except VigilError as exc:
            failures.append(f"{integration}: {exc.message}")
    if done:
        modeladmin.message_user(
            request,
            f"{done} integration(s) in maintenance until {when(ends_at)}: their "
            "alerts are recorded, open no incident and page no one.",
            messages.SUCCESS,
        )
    for failure in failures:
        modeladmin.message_user(request, failure, messages.ERROR)


@admin.action(description="Put in maintenance for 1 h", permissions=["change"])
def put_in_maintenance_1h(modeladmin, request: HttpRequest, queryset: QuerySet[Integration]):
    _put_in_maintenance(modeladmin, request, queryset, 1)


@admin.action(description="Put in maintenance for 4 h", permissions=["change"])
def put_in_maintenance_4h(modeladmin, request: HttpRequest, queryset: QuerySet[Integration]):
    _put_in_maintenance(modeladmin, request, queryset, 4)


MAINTENANCE_ACTIONS = (put_in_maintenance_1h, put_in_maintenance_4h)


# --- routing rules on the integration page --------------------------------------------------------


class RoutingRuleForm(forms.ModelForm):
    class Meta:
        model = RoutingRule
        fields = ["position", "match", "service", "severity", "enabled"]
        widgets = {"match": forms.Textarea(attrs={"rows": 2, "cols": 40})}

    def clean_match(self) -> Any:
        value = self.cleaned_data.get("match")
        errors = routing_match_errors(value)
        if errors:
            raise forms.ValidationError(errors)
        return value


class RoutingRuleInline(admin.TabularInline):
    """Tried in order of position (then id); the first enabled rule whose labels all match
    routes the alert."""

    model = RoutingRule
    form = RoutingRuleForm
    extra = 1
    fields = ["position", "match", "service", "severity", "enabled"]
    ordering = ("position", "id")
    verbose_name = "routing rule"
    # How rules are tried is said in the integration's "Incidents from this sender" section,
    # and a rule's row needs no caption (the CSS hides it): its match is in the row.
    verbose_name_plural = "routing rules"
    classes = ["vigil-routing-rules"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW) or _can_manage(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _can_manage(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _can_manage(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _can_manage(request)


class RoutingRulesAdminMixin:
    """For the integration's admin: its routing rules as an inline of the change page, saved
    through the routing services (a refusal rolls the whole page back)."""

    inlines = [RoutingRuleInline]

    def get_inline_instances(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return []  # rules belong to a saved integration
        return super().get_inline_instances(request, obj)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        for formset in formsets:
            if formset.model is RoutingRule:
                _save_routing_rules(request, form.instance, formset)


def _save_routing_rules(request: HttpRequest, integration: Integration, formset: Any) -> None:
    """One service call per added, changed or deleted rule; what was done is left on the
    formset as ``formset.save()`` would (the admin's change message reads it)."""
    actor, source = request.user, Source.ADMIN
    deleted = set(map(id, formset.deleted_forms))
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    try:
        for rule_form in formset.initial_forms:
            rule = rule_form.instance
            if id(rule_form) in deleted:
                routing_rule_delete(rule=rule, actor=actor, source=source)
                formset.deleted_objects.append(rule)
            elif rule_form.has_changed():
                changes = {
                    name: rule_form.cleaned_data[name]
                    for name in rule_form.changed_data
                    if name in ROUTING_RULE_FIELDS
                }
                if changes:
                    rule = routing_rule_update(rule=rule, actor=actor, source=source, **changes)
                    formset.changed_objects.append((rule, list(changes)))
        for rule_form in formset.extra_forms:
            if id(rule_form) in deleted or not rule_form.has_changed():
                continue
            rule = routing_rule_create(
                integration=integration,
                actor=actor,
                source=source,
                **{name: rule_form.cleaned_data[name] for name in ROUTING_RULE_FIELDS},
            )
            formset.new_objects.append(rule)
    except VigilError as exc:
        raise ServiceRejected(exc) from exc


__all__ = [
    "MAINTENANCE_ACTIONS",
    "MaintenanceWindowAdmin",
    "RoutingRuleInline",
    "RoutingRulesAdminMixin",
]
