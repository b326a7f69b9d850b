"""Admin for the escalation matrix (§5.1, history-tracked policy), running escalations with
their policy snapshot, escalation events and used acknowledge links; and, on the incident
page, the incident's escalation schedule (panel) and who is called next (header fact).

Escalations, events and link uses are written only by the escalation services, so they are
read-only here. The matrix is policy: editable by those allowed, every change audited.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.admin.display import severity_text
from incidents.admin.extensions import (
    HeaderFact,
    incident_header_fact_register,
    incident_page_panel_register,
)
from incidents.models import Channel, Incident
from incidents.timeformat import when

from .models import AckLinkUse, EscalationEvent, EscalationStep, IncidentEscalation
from .schedule import EscalationSchedule, escalation_schedule
from .services.paging import format_elapsed
from .services.policy import (
    escalation_step_create,
    escalation_step_delete,
    escalation_step_update,
)
from .services.timers import ACK_TIMEOUT_STEP


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _when(value: Any) -> str:
    return when(value) if value else "–"


def _contact_text(contact: dict[str, Any] | None) -> str:
    if not contact:
        return "no contact set"
    parts = [contact.get("email"), contact.get("phone"), contact.get("slack")]
    details = ", ".join(p for p in parts if p)
    return f"{contact.get('name', '?')} ({details})" if details else contact.get("name", "?")


def snapshot_html(snapshot: dict[str, Any], *, current: int | None = None) -> SafeString:
    """The policy snapshot as small tables: per severity its channels, response target and
    matrix row with each level's contact; then the backup contacts paged on ack timeout."""
    if not snapshot:
        return mark_safe("<em>No snapshot.</em>")
    levels = snapshot.get("levels", {})
    rows = []
    for severity, conf in sorted(snapshot.get("severities", {}).items()):
        steps = snapshot.get("matrix", {}).get(severity, [])
        step_text = format_html_join(
            mark_safe("<br>"),
            "{} → <strong>{}</strong>: {}",
            (
                (
                    format_elapsed(timedelta(seconds=step["elapsed_s"])),
                    levels.get(step["level"], {}).get("name", step["level"]),
                    _contact_text(levels.get(step["level"], {}).get("contact")),
                )
                for step in steps
            ),
        )
        channels = ", ".join(Channel(c).label for c in conf.get("channels", []))
        marker = " (current)" if current is not None and str(current) == severity else ""
        rows.append(
            format_html(
                "<tr><th>Sev {}{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                severity,
                marker,
                format_elapsed(timedelta(seconds=conf.get("response_target_s", 0))),
                channels,
                step_text or mark_safe("<em>no steps</em>"),
            )
        )
    backups = format_html_join(
        mark_safe("<br>"),
        "{}: {}",
        (
            (entry.get("role", key), _contact_text(entry.get("contact")))
            for key, entry in snapshot.get("backups", {}).items()
        ),
    )
    return format_html(
        '<table class="vigil-snapshot"><thead><tr><th>Severity</th><th>Response target</th>'
        "<th>Channels</th><th>Escalation matrix (time since detection → level: contact)</th>"
        "</tr></thead><tbody>{}</tbody></table>"
        "<p><strong>Backups paged when not acknowledged in time</strong><br>{}</p>"
        "<p>Taken {}.</p>",
        format_html_join("", "{}", ((row,) for row in rows)),
        backups or mark_safe("<em>none</em>"),
        snapshot.get("taken_at", "?"),
    )


# --- the matrix ------------------------------------------------------------------------------


class EscalationStepForm(forms.ModelForm):
    class Meta:
        model = EscalationStep
        fields = ("severity", "elapsed", "target")

    def clean_elapsed(self) -> timedelta:
        elapsed = self.cleaned_data["elapsed"]
        if elapsed is not None and elapsed < timedelta(0):
            raise forms.ValidationError("The time since detection cannot be negative.")
        return elapsed


@admin.register(EscalationStep)
class EscalationStepAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    """The §5.1 matrix. Add, change and delete (and "delete selected") call the matrix
    services: permission check, validation, audited save."""

    write_services = WriteServices(
        instance="step",
        create=escalation_step_create,
        update=escalation_step_update,
        delete=escalation_step_delete,
    )
    form = EscalationStepForm
    list_display = ("severity", "elapsed_label", "target")
    list_filter = ("severity", "target")
    list_select_related = ("severity", "target")
    ordering = ("severity", "elapsed")

    @admin.display(description="Time since detection", ordering="elapsed")
    def elapsed_label(self, obj: EscalationStep) -> str:
        return format_elapsed(obj.elapsed)


# --- running escalations and events ----------------------------------------------------------


class RunningFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("running", "Running"), ("due", "Due now"), ("stopped", "Stopped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "running":
            return queryset.filter(stopped_at__isnull=True)
        if self.value() == "stopped":
            return queryset.filter(stopped_at__isnull=False)
        if self.value() == "due":
            from .services.timers import escalation_due

            return queryset.filter(pk__in=escalation_due(now=timezone.now()).values("pk"))
        return queryset


def _incident_link(incident: Incident) -> str:
    return format_html(
        '<a href="{}">{}</a>',
        reverse("admin:incidents_incident_change", args=[incident.pk]),
        incident.number,
    )


@admin.register(IncidentEscalation)
class IncidentEscalationAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = (
        "incident_label",
        "severity",
        "started_at",
        "ack_due_at",
        "next_due_at",
        "state",
    )
    list_filter = (RunningFilter,)
    list_select_related = ("incident", "incident__severity")
    search_fields = ("incident__number", "incident__title")
    search_help_text = "Incident ID or title."
    ordering = ("-started_at",)
    show_full_result_count = False
    fields = (
        "incident_label",
        "started_at",
        "state",
        "severity_from",
        "ack_due_at",
        "next_due_at",
        "snapshot_display",
    )
    readonly_fields = fields

    @admin.display(description="Incident", ordering="incident__number")
    def incident_label(self, obj: IncidentEscalation) -> str:
        return _incident_link(obj.incident)

    @admin.display(description="Severity", ordering="incident__severity")
    def severity(self, obj: IncidentEscalation) -> str:
        return severity_text(obj.incident.severity)

    @admin.display(description="State")
    def state(self, obj: IncidentEscalation) -> str:
        if obj.stopped_at:
            return f"Stopped {_when(obj.stopped_at)}: {obj.stop_reason}"
        return "Running"

    @admin.display(description="Policy snapshot")
    def snapshot_display(self, obj: IncidentEscalation) -> SafeString:
        return snapshot_html(obj.policy_snapshot, current=obj.incident.severity_id)


@admin.register(EscalationEvent)
class EscalationEventAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = (
        "fired_at",
        "incident_label",
        "step_label",
        "target",
        "severity",
        "due_at",
        "caught_up",
    )
    list_filter = ("severity", "caught_up", "target")
    list_select_related = ("incident",)
    search_fields = ("incident__number", "step", "target")
    search_help_text = "Incident ID, step key or target."
    date_hierarchy = "fired_at"
    ordering = ("-fired_at", "-id")
    show_full_result_count = False

    @admin.display(description="Incident", ordering="incident__number")
    def incident_label(self, obj: EscalationEvent) -> str:
        return _incident_link(obj.incident)

    @admin.display(description="Step", ordering="step")
    def step_label(self, obj: EscalationEvent) -> str:
        return _step_label(obj)


def _step_label(event: EscalationEvent) -> str:
    if event.step == ACK_TIMEOUT_STEP:
        return "Acknowledgement timeout"
    elapsed = format_elapsed(event.elapsed) if event.elapsed is not None else "?"
    return f"Sev {event.severity} after {elapsed}"


@admin.register(AckLinkUse)
class AckLinkUseAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("used_at", "incident_label", "user", "contact", "channel", "outcome")
    list_filter = ("outcome", "channel")
    list_select_related = ("incident", "user", "contact")
    search_fields = ("incident__number", "nonce", "user__username", "contact__name")
    ordering = ("-used_at",)

    @admin.display(description="Incident", ordering="incident__number")
    def incident_label(self, obj: AckLinkUse) -> str:
        return _incident_link(obj.incident)


# --- on the incident page --------------------------------------------------------------------

SCHEDULE_PERMISSION = "escalation.view_incidentescalation"


def _schedule(request: HttpRequest, incident: Incident) -> EscalationSchedule:
    """The incident's schedule, read once per request (the header and the panel share it)."""
    cache = request.__dict__.setdefault("_vigil_escalation_schedules", {})
    if incident.pk not in cache:
        cache[incident.pk] = escalation_schedule(incident=incident)
    return cache[incident.pk]


def next_escalation_fact(*, request: HttpRequest, incident: Incident) -> HeaderFact | None:
    """ "Grace Liu (IT Manager) at 01:20 by phone", for the incident page's header."""
    schedule = _schedule(request, incident)
    if not schedule.started:
        return None
    upcoming = schedule.next
    if upcoming is None:
        text = "none planned" if schedule.running else "stopped"
        return HeaderFact(
            label="Next escalation", text=text, title=schedule.stop_reason, state="none"
        )
    now = timezone.now()
    title = f"{upcoming.who} by {upcoming.channel_text}"
    if upcoming.unreachable:
        title += f" (no address for {upcoming.unreachable_text})"
    left = (upcoming.due_at - now).total_seconds()
    return HeaderFact(
        label="Next escalation",
        text=upcoming.headline(now),
        title=title,
        state="warning" if left < 5 * 60 else "",
    )


def schedule_panel(*, request: HttpRequest, incident: Incident) -> SafeString:
    """This incident's escalation: who is called when and how, fired, planned or skipped."""
    schedule = _schedule(request, incident)
    return render_to_string(
        "admin/escalation/incident_schedule.html",
        {"schedule": schedule, "now": timezone.now(), "incident": incident},
    )


# The incident page is the core's; it offers registries for what other apps show on it. The
# whole policy snapshot stays on the escalation's own page (IncidentEscalationAdmin).
incident_page_panel_register(
    key="escalation-schedule",
    title="Escalation schedule",
    render=schedule_panel,
    permission=SCHEDULE_PERMISSION,
    placement="side",
)
incident_header_fact_register(
    key="next-escalation", render=next_escalation_fact, permission=SCHEDULE_PERMISSION
)
