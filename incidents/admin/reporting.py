"""Reporting an incident from the admin (§4.1): the staff form for customer reports, support
escalations, third-party notifications and routine checks, and the list of reports received
(admin, API, inbound email). The form calls ``report_submit`` with ``source="admin"``, the
same service the API and inbound email use."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from ..errors import VigilError
from ..models import Incident, IncomingReport, ReportKind, Service, SeverityLevel, Source
from ..services.reports import DEFAULT_SEVERITY, DESCRIPTION_MAX, report_submit
from .common import ReadOnlyAdminMixin
from .forms import attach_errors
from .workspace import INCIDENT_ID
from .workspace_actions import error_text


class ReportForm(forms.Form):
    """What staff type when someone reports a problem; checked and shaped only."""

    kind = forms.ChoiceField(
        choices=ReportKind.choices,
        initial=ReportKind.CUSTOMER_REPORT,
        widget=forms.RadioSelect,
        label="Reported by",
        help_text="Becomes the new incident's detection source (§4.1).",
    )
    reporter_name = forms.CharField(max_length=200, required=False, label="Reporter's name")
    reporter_email = forms.EmailField(required=False, label="Reporter's email")
    title = forms.CharField(
        max_length=200,
        required=False,
        help_text="Leave empty to use the description's first line.",
        widget=forms.TextInput(attrs={"class": "vLargeTextField"}),
    )
    description = forms.CharField(
        max_length=DESCRIPTION_MAX,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text="What the reporter says, in their words.",
    )
    services = forms.ModelMultipleChoiceField(
        queryset=Service.objects.filter(is_active=True).order_by("name"),
        required=False,
        label="Affected services",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    severity = forms.ModelChoiceField(
        queryset=SeverityLevel.objects.order_by("level"),
        to_field_name="level",
        required=False,
        empty_label=f"Not known yet (Sev {DEFAULT_SEVERITY}, raise it after triage)",
    )
    incident = forms.CharField(
        max_length=24,
        required=False,
        label="Append to incident",
        help_text="An existing incident's ID (INC-YYYY-MMDD-XXX) to add this report to instead "
        "of opening a new incident.",
    )

    def clean_incident(self) -> Incident | None:
        value = (self.cleaned_data.get("incident") or "").strip().upper()
        if not value:
            return None
        if not INCIDENT_ID.match(value):
            raise forms.ValidationError("Give an incident ID like INC-2026-1127-001.")
        incident = Incident.objects.filter(number=value).first()
        if incident is None:
            raise forms.ValidationError(f"No incident {value}.")
        return incident

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not (data.get("reporter_name") or "").strip() and not data.get("reporter_email"):
            self.add_error("reporter_name", "Name the reporter, or give their email address.")
        return data


@admin.register(IncomingReport)
class IncomingReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Reports received. "Report an incident" (this model's add page) is the staff form."""

    list_display = (
        "received_at",
        "incident_link",
        "kind",
        "reporter",
        "channel",
        "opened_incident",
        "excerpt",
    )
    list_filter = ("kind", "channel", "opened_incident")
    list_select_related = ("incident",)
    search_fields = ("=incident__number", "reporter_email", "reporter_name", "title")
    search_help_text = "An exact incident ID, a reporter's email or name, or title words."
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    fields = (
        "incident",
        "opened_incident",
        "kind",
        "channel",
        "reporter_name",
        "reporter_email",
        "title",
        "description",
        "services",
        "severity",
        "message_id",
        "submitted_by",
        "received_at",
    )

    # Reports are filed by whoever may log incidents and read by whoever may read them; the
    # model's own permissions are held by no role group.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("incidents.view_incident")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incidents.view_incident")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("incidents.add_incident")

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: IncomingReport) -> str:
        url = reverse("admin:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.incident.number)

    @admin.display(description="Reporter")
    def reporter(self, obj: IncomingReport) -> str:
        return obj.reporter_label

    @admin.display(description="Report")
    def excerpt(self, obj: IncomingReport) -> str:
        text = (obj.title or obj.description).replace("\n", " ")
        return text if len(text) <= 100 else text[:99] + "…"

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = ReportForm(request.POST)
            if form.is_valid():
                done = self._submit(request, form)
                if done is not None:
                    return done
        else:
            initial = {"incident": request.GET.get("incident", "")}
            form = ReportForm(initial=initial)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Report an incident",
            "form": form,
            "incident_list_url": reverse("admin:incidents_incident_changelist"),
        }
        return TemplateResponse(request, "incidents/report_form.html", context)

    def _submit(self, request: HttpRequest, form: ReportForm) -> HttpResponse | None:
        data = form.cleaned_data
        severity = data.get("severity")
        try:
            outcome = report_submit(
                actor=request.user,
                source=Source.ADMIN,
                kind=data["kind"],
                description=data["description"],
                reporter_name=data.get("reporter_name", ""),
                reporter_email=data.get("reporter_email", ""),
                title=data.get("title", ""),
                services=list(data.get("services") or []),
                severity=severity.level if severity is not None else None,
                incident=data.get("incident"),
            )
        except VigilError as exc:
            attach_errors(form, exc)
            if not form.errors:
                form.add_error(None, error_text(exc))
            return None
        incident = outcome.incident
        if outcome.opened:
            self.log_addition(request, incident, "Opened from a report (admin form)")
            text = f"{incident.number} opened from the {outcome.report.get_kind_display().lower()}."
        else:
            text = f"Report added to the timeline of {incident.number}."
        messages.success(request, text)
        return redirect(reverse("admin:incidents_incident_change", args=[incident.pk]))
