"""Incident events and their handling, read-only: what the core recorded, which followers ran
on it, and the handlers that gave up (with a "retry" action, as the outbox has)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ..events import event_handling_retry
from ..models import EventHandling, HandlingStatus, IncidentEvent
from .common import ReadOnlyAdminMixin


def _incident_link(incident) -> str:
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    return format_html('<a href="{}">{}</a>', url, incident.number)


class EventHandlingInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = EventHandling
    fields = ("handler", "status", "attempts", "next_attempt_at", "finished_at", "last_error")
    readonly_fields = fields
    extra = 0


@admin.register(IncidentEvent)
class IncidentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "occurred_at", "incident_link", "name", "source", "status", "attempts")
    list_filter = ("status", "name", "urgent")
    list_select_related = ("incident",)
    search_fields = ("=incident__number",)
    search_help_text = "An exact incident ID."
    ordering = ("-id",)
    show_full_result_count = False
    fields = (
        "incident",
        "name",
        "payload",
        "actor",
        "source",
        "occurred_at",
        "urgent",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_at",
        "handled_at",
        "last_error",
    )
    readonly_fields = fields
    inlines = [EventHandlingInline]

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: IncidentEvent) -> str:
        return _incident_link(obj.incident)


@admin.register(EventHandling)
class EventHandlingAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("event_id", "incident_link", "event_name", "handler", "status", "attempts")
    list_filter = ("status", "handler")
    list_select_related = ("event", "event__incident")
    search_fields = ("=event__incident__number",)
    search_help_text = "An exact incident ID."
    ordering = ("-event_id", "handler")
    show_full_result_count = False
    fields = ("event", "handler", "status", "attempts", "next_attempt_at", "finished_at")
    readonly_fields = (*fields, "last_error")
    actions = ["retry"]

    def get_fields(self, request: HttpRequest, obj: EventHandling | None = None):
        return (*self.fields, "last_error")

    @admin.display(description="Incident", ordering="event__incident__number")
    def incident_link(self, obj: EventHandling) -> str:
        return _incident_link(obj.event.incident)

    @admin.display(description="Event", ordering="event__name")
    def event_name(self, obj: EventHandling) -> str:
        return obj.event.name

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incidents.change_incident")

    @admin.action(description="Retry (handlers that gave up)", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[EventHandling]) -> None:
        retried = skipped = 0
        for handling in queryset:
            if event_handling_retry(handling=handling):
                retried += 1
            else:
                skipped += 1
        if retried:
            self.message_user(request, f"{retried} handler(s) will run again.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} skipped: only a handler that gave up can be retried.",
                messages.WARNING,
            )


__all__ = ["EventHandlingAdmin", "HandlingStatus", "IncidentEventAdmin"]
