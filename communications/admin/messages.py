"""Customer messages in the admin: every email (or subscriber webhook call) of each published
update and maintenance notice, read-only, with what the email provider reported about it (its
delivery events). The status update's list and page show the per-update delivery counts
(:func:`delivery_counts` annotates the queryset; :func:`deliveries_html` renders them)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ..models import Message, MessageEvent
from ..selectors import DELIVERY_COUNTED

# The admin's counts: each column and the states it counts (shared with the API).
COUNTED = DELIVERY_COUNTED
STATE_CSS = {
    "queued": "vigil-clock-none",
    "sent": "vigil-clock-none",
    "delivered": "vigil-clock-met",
    "bounced": "vigil-clock-breached",
    "complained": "vigil-clock-breached",
    "failed": "vigil-clock-breached",
}


def deliveries_html(obj: Any, *, filter_param: str = "status_update__id__exact") -> str:
    """ "12 delivered · 1 bounced ...", linking to the update's messages; "–" before any."""
    counts = [(name, getattr(obj, f"deliveries_{name}", 0) or 0) for name in COUNTED]
    shown = [(name, n) for name, n in counts if n]
    if not shown:
        return "–"
    url = reverse("admin:communications_message_changelist") + f"?{filter_param}={obj.pk}"
    parts = format_html_join(
        " · ", '<span class="{}">{} {}</span>', ((STATE_CSS[n], c, n) for n, c in shown)
    )
    return format_html('<a href="{}">{}</a>', url, parts)


class MessageEventInline(admin.TabularInline):
    model = MessageEvent
    fields = ("occurred_at", "event_type", "provider", "recipient", "detail", "event_id")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("occurred_at", "pk")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "recipient",
        "state_label",
        "audience",
        "channel",
        "publication",
        "created_at",
        "state_changed_at",
    )
    list_filter = ("state", "kind", "audience", "channel")
    search_fields = (
        "recipient",
        "incident__number",
        "idempotency_key",
        "message_id",
        "provider_message_id",
    )
    list_select_related = ("status_update", "maintenance", "incident")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    inlines = [MessageEventInline]
    fields = (
        "recipient",
        "channel",
        "audience",
        "kind",
        "publication",
        "subscriber",
        "contact",
        "state",
        "state_detail",
        "state_changed_at",
        "message_id",
        "provider_message_id",
        "idempotency_key",
        "created_at",
    )
    readonly_fields = fields
    # The links from an update's (or a window's) delivery counts.
    FILTERS = {"status_update__id__exact", "maintenance__id__exact", "incident__id__exact"}

    def lookup_allowed(self, lookup: str, value: Any, request: Any = None) -> bool:
        return lookup in self.FILTERS or super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("subscriber", "contact")

    @admin.display(description="State", ordering="state")
    def state_label(self, obj: Message) -> str:
        column = next((name for name, states in COUNTED.items() if obj.state in states), "")
        return format_html(
            '<strong class="{}">{}</strong>', STATE_CSS.get(column, ""), obj.get_state_display()
        )

    @admin.display(description="Publication")
    def publication(self, obj: Message) -> str:
        if obj.status_update_id:
            url = reverse("admin:communications_statusupdate_change", args=[obj.status_update_id])
            return format_html(
                '<a href="{}">{}: {}</a>',
                url,
                obj.incident.number if obj.incident_id else "",
                obj.status_update.public_title,
            )
        if obj.maintenance_id:
            url = reverse("admin:communications_maintenance_change", args=[obj.maintenance_id])
            return format_html('<a href="{}">Maintenance: {}</a>', url, obj.maintenance.title)
        return "–"
