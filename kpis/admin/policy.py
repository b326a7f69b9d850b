"""The KPI definitions and the KPI policy in the admin: edited through ``kpis.services.policy``
(validation, a history row naming the author, stored months marked stale), audited with
simple-history. The KPI dashboard's pages hang off the definitions' admin URLs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from simple_history.admin import SimpleHistoryAdmin

from incidents.models import SeverityLevel

from ..formatting import format_value
from ..models import KpiDefinition, KpiPolicy
from ..services.policy import (
    kpi_definition_errors,
    kpi_definition_save,
    kpi_policy_errors,
    kpi_policy_save,
)
from .dashboard import dashboard_urls


class _NoRevert:
    """History is shown; simple-history's "revert" would save around the services."""

    def revert_disabled(self, request: HttpRequest, obj: object = None) -> bool:
        return True


class KpiDefinitionForm(forms.ModelForm):
    severities = forms.TypedMultipleChoiceField(
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The severities measured. None ticked: every severity.",
    )

    class Meta:
        model = KpiDefinition
        fields = [
            "slug",
            "name",
            "measure",
            "statistic",
            "target",
            "severities",
            "description",
            "position",
            "is_active",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "severities" in self.fields:
            self.fields["severities"].choices = [
                (level.level, str(level)) for level in SeverityLevel.objects.order_by("level")
            ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        measure = cleaned.get("measure", getattr(self.instance, "measure", None))
        errors = kpi_definition_errors(
            measure=measure,
            target=cleaned.get("target"),
            severities=cleaned.get("severities", []),
        )
        for field, message in errors.items():
            if field in self.fields:
                self.add_error(field, message)
            else:
                self.add_error(None, message)
        return cleaned


@admin.register(KpiDefinition)
class KpiDefinitionAdmin(_NoRevert, SimpleHistoryAdmin):
    form = KpiDefinitionForm
    change_list_template = "kpis/admin/kpidefinition_change_list.html"
    list_display = (
        "name",
        "measure_text",
        "target_text",
        "statistic",
        "severities_text",
        "is_active",
    )
    list_filter = ("is_active", "measure")
    search_fields = ("name", "slug")
    ordering = ("position", "id")
    fieldsets = [
        (None, {"fields": ["name", "slug", "measure", "is_active", "position"]}),
        ("Target", {"fields": ["statistic", "target", "severities"]}),
        (None, {"fields": ["description"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: KpiDefinition | None = None):
        # The API, the dashboard's links and the stored trend name a KPI by its slug.
        return ("slug",) if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deactivate instead: its stored rollups and past reports still name it.
        return False

    @admin.display(description="Measure", ordering="measure")
    def measure_text(self, obj: KpiDefinition) -> str:
        return obj.get_measure_display().split(" (")[0]

    @admin.display(description="Target", ordering="target")
    def target_text(self, obj: KpiDefinition) -> str:
        sign = "≥" if obj.higher_is_better else "≤"
        return f"{sign} {format_value(float(obj.target), obj.unit)}"

    @admin.display(description="Severities")
    def severities_text(self, obj: KpiDefinition) -> str:
        levels = obj.severities or []
        return ", ".join(f"Sev {level}" for level in levels) if levels else "All"

    def save_model(self, request: HttpRequest, obj: KpiDefinition, form: Any, change: bool):
        try:
            kpi_definition_save(
                definition=obj,
                actor=request.user,
                changed=form.changed_data if change else None,
            )
        except ValidationError as error:  # the form checked the same; a race is still possible
            raise forms.ValidationError(error.messages) from error

    def get_urls(self):
        return dashboard_urls(self.admin_site) + super().get_urls()


class KpiPolicyForm(forms.ModelForm):
    class Meta:
        model = KpiPolicy
        fields = [
            "first_contact_rule",
            "time_zone",
            "report_recipients",
            "survey_enabled",
            "survey_expiry_days",
        ]
        widgets = {"report_recipients": forms.Textarea(attrs={"rows": 5, "cols": 50})}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        errors = kpi_policy_errors(
            time_zone=cleaned.get("time_zone"),
            report_recipients=cleaned.get("report_recipients"),
        )
        for field, message in errors.items():
            self.add_error(field, message)
        return cleaned


@admin.register(KpiPolicy)
class KpiPolicyAdmin(_NoRevert, SimpleHistoryAdmin):
    """One row, seeded: changed, never added or deleted."""

    form = KpiPolicyForm
    fieldsets = [
        ("First contact resolution", {"fields": ["first_contact_rule"]}),
        ("Months", {"fields": ["time_zone"]}),
        ("Monthly report", {"fields": ["report_recipients"]}),
        ("Customer satisfaction survey", {"fields": ["survey_enabled", "survey_expiry_days"]}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        # A list of one row says nothing: open the row.
        policy, _ = KpiPolicy.objects.get_or_create(pk=1)
        return HttpResponseRedirect(reverse("admin:kpis_kpipolicy_change", args=[policy.pk]))

    def save_model(self, request: HttpRequest, obj: KpiPolicy, form: Any, change: bool) -> None:
        try:
            kpi_policy_save(policy=obj, actor=request.user, changed=form.changed_data)
        except ValidationError as error:
            raise forms.ValidationError(error.messages) from error
