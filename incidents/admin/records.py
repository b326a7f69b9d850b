"""Records the services write — timeline entries, role assignments, SLA breaches — shown
read-only; they change only through the incident page and the services behind it."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from ..models import IncidentDaySequence, RoleAssignment, SlaBreach, TimelineEntry
from . import display as ui
from .common import NoRevertMixin, ReadOnlyAdminMixin


def _incident_link(incident) -> str:
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    return format_html('<a href="{}">{}</a>', url, incident.number)


@admin.register(TimelineEntry)
class TimelineEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "incident_id_link", "kind", "source", "author", "excerpt")
    list_filter = ("kind", "source")
    list_select_related = ("incident", "actor")
    search_fields = ("=incident__number", "message")
    search_help_text = "An exact incident ID, or words of the entry."
    ordering = ("-occurred_at", "-id")
    show_full_result_count = False
    fields = (
        "incident",
        "occurred_at",
        "kind",
        "source",
        "actor",
        "message",
        "data",
        "recorded_at",
    )

    @admin.display(description="Incident", ordering="incident__number")
    def incident_id_link(self, obj: TimelineEntry) -> str:
        return _incident_link(obj.incident)

    @admin.display(description="Author")
    def author(self, obj: TimelineEntry) -> str:
        return obj.actor_label

    @admin.display(description="Entry")
    def excerpt(self, obj: TimelineEntry) -> str:
        text = obj.message.replace("\n", " ")
        return text if len(text) <= 140 else text[:139] + "…"


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(ReadOnlyAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    list_display = ("incident_id_link", "role", "holder", "assigned_at", "assigned_by")
    list_filter = ("role",)
    list_select_related = ("incident", "role", "user", "assigned_by")
    search_fields = ("=incident__number",)
    ordering = ("-assigned_at",)
    show_full_result_count = False

    @admin.display(description="Incident", ordering="incident__number")
    def incident_id_link(self, obj: RoleAssignment) -> str:
        return _incident_link(obj.incident)

    @admin.display(description="Held by", ordering="user__username")
    def holder(self, obj: RoleAssignment) -> str:
        return ui.person(obj.user)


@admin.register(SlaBreach)
class SlaBreachAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("incident_id_link", "severity", "target", "due_at", "noted_at")
    list_filter = ("target",)
    list_select_related = ("incident__severity",)
    search_fields = ("=incident__number",)
    ordering = ("-noted_at",)
    show_full_result_count = False

    @admin.display(description="Incident", ordering="incident__number")
    def incident_id_link(self, obj: SlaBreach) -> str:
        return _incident_link(obj.incident)

    @admin.display(description="Severity", ordering="incident__severity_id")
    def severity(self, obj: SlaBreach) -> str:
        return ui.severity_badge(obj.incident.severity)


@admin.register(IncidentDaySequence)
class IncidentDaySequenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The last ID handed out per day, for checking the INC-YYYY-MMDD-XXX numbering."""

    list_display = ("day", "last")
    ordering = ("-day",)
    show_full_result_count = False
