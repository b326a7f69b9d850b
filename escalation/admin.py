"""Admin for the notification outbox (delivery side); escalation policy and events live in
``admin_escalation``.

Notifications are written only by the outbox services, so the admin shows them read-only; the
one write is the "retry now" action, which calls :func:`notification_retry` per row. The
escalation matrix page (``admin_escalation``) writes its steps through the matrix services
(``escalation.services.policy``), set up at the end of this module.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from incidents.admin.extensions import incident_page_inline_register
from incidents.models import Source

from . import admin_escalation  # noqa: F401
from .models import Notification, NotificationStatus
from .services import notification_retry

# A one-click acknowledge link: its key after the "#" (or, in links of the old form, in the path).
ACK_LINK = re.compile(r"(/ack/)(?:#[^\s|>]+|[^/\s]+/)")

STATUS_COLOURS = {
    NotificationStatus.PENDING: "#8a6d00",
    NotificationStatus.SENDING: "#1f5fa8",
    NotificationStatus.SENT: "#2e7d32",
    NotificationStatus.FAILED: "#b3261e",
}


def status_badge(obj: Notification) -> str:
    return format_html(
        '<strong class="vigil-notification-{}" style="color:{}">{}</strong>',
        obj.status,
        STATUS_COLOURS.get(obj.status, "inherit"),
        obj.get_status_display(),
    )


def short_error(obj: Notification) -> str:
    if not obj.last_error:
        return "–"
    return format_html(
        '<span title="{}">{}</span>', obj.last_error, Truncator(obj.last_error).chars(80)
    )


ESCALATION_KINDS = {
    "page": "Page",
    "step": "Escalation step",
    "ack_timeout": "Acknowledgement timeout",
}


def message_kind(template: str) -> str:
    """What a notification is, in words, from the template it was made with: an escalation
    page's "escalation/page/email.txt" is "Page", "communications/first_update_reminder" is
    "First update reminder" (the list shows no template paths)."""
    parts = [p for p in (template or "").split("/") if p]
    if not parts:
        return "–"
    if parts[0] == "escalation" and len(parts) > 1:
        return ESCALATION_KINDS.get(parts[1], parts[1].replace("_", " ").capitalize())
    name = parts[-1].rsplit(".", 1)[0] if parts[-1].endswith(".txt") else parts[-1]
    words = name.replace("-", " ").replace("_", " ").split()
    if len(words) > 1 and words[-1] == "email":
        words = words[:-1]
    return " ".join(words).capitalize() or "–"


class MessageKindFilter(admin.SimpleListFilter):
    title = "message"
    parameter_name = "template"

    def lookups(self, request, model_admin):
        names = Notification.objects.order_by().values_list("template", flat=True).distinct()
        kinds: dict[str, str] = {}
        for name in names:
            kinds.setdefault(message_kind(name), name)
        return sorted(((label, label) for label in kinds), key=lambda item: item[1])

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        names = Notification.objects.order_by().values_list("template", flat=True).distinct()
        return queryset.filter(template__in=[n for n in names if message_kind(n) == self.value()])


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "status_label",
        "channel",
        "recipient_label",
        "reason",
        "incident_link",
        "attempts",
        "error_label",
        "next_or_done",
    )
    list_display_links = ("created_at",)
    list_filter = ("status", "channel", MessageKindFilter)
    list_select_related = ("incident", "contact")
    search_fields = ("recipient", "idempotency_key", "provider_message_id", "incident__number")
    search_help_text = "Recipient, incident ID, idempotency key or provider message id."
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 50
    actions = ("retry_now",)
    readonly_fields = ("body_shown", "context_shown", "message_label")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "incident",
                    "contact",
                    "channel",
                    "recipient",
                    "reason",
                    "message_label",
                    "subject",
                    "body_shown",
                )
            },
        ),
        (
            "Delivery",
            {
                "fields": (
                    "status",
                    "attempts",
                    "last_error",
                    "provider_message_id",
                    "idempotency_key",
                    "next_attempt_at",
                    "claimed_at",
                    "sent_at",
                    "failed_at",
                    "created_at",
                )
            },
        ),
        ("Context", {"fields": ("context_shown",), "classes": ("collapse",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        # An email's context may hold attached files (up to 10 MB): read it for one row only.
        return super().get_queryset(request).defer("context")

    @admin.display(description="Context")
    def context_shown(self, obj: Notification) -> str:
        context = dict(obj.context or {})
        if isinstance(context.get("attachments"), list):
            context["attachments"] = [
                {**a, "content_base64": f"[{len(a.get('content_base64') or '')} characters]"}
                if isinstance(a, dict)
                else a
                for a in context["attachments"]
            ]
        return format_html("<pre>{}</pre>", json.dumps(context, indent=2, ensure_ascii=False))

    @admin.display(description="Message", ordering="template")
    def message_label(self, obj: Notification) -> str:
        return message_kind(obj.template)

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj: Notification) -> str:
        return status_badge(obj)

    @admin.display(description="Body")
    def body_shown(self, obj: Notification) -> str:
        # A one-click acknowledge link is a credential of its recipient: anyone who may read
        # the outbox (a Viewer, say) must not be able to acknowledge as somebody else.
        return ACK_LINK.sub(r"\1#[one-click link hidden]", obj.body)

    @admin.display(description="Recipient", ordering="recipient")
    def recipient_label(self, obj: Notification) -> str:
        if obj.contact is not None:
            return f"{obj.contact.name} ({obj.recipient})"
        return obj.recipient

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: Notification) -> str:
        if obj.incident is None:
            return "–"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:incidents_incident_change", args=[obj.incident_id]),
            obj.incident.number,
        )

    @admin.display(description="Last error")
    def error_label(self, obj: Notification) -> str:
        return short_error(obj)

    @admin.display(description="Next attempt / done", ordering="next_attempt_at")
    def next_or_done(self, obj: Notification) -> datetime | None:
        if obj.status == NotificationStatus.SENT:
            return obj.sent_at
        if obj.status == NotificationStatus.FAILED:
            return obj.failed_at
        return obj.next_attempt_at

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("escalation.change_notification")

    @admin.action(description="Retry now (failed or waiting notifications)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        retried, skipped, errors = 0, 0, []
        for notification in queryset.order_by("pk"):
            try:
                done = notification_retry(
                    notification=notification, actor=request.user, source=Source.ADMIN
                )
            except Exception as exc:  # one bad row must not stop the others
                errors.append(f"#{notification.pk}: {exc}")
                continue
            retried += done
            skipped += not done
        if retried:
            self.message_user(
                request, f"{retried} notification(s) queued for delivery now.", messages.SUCCESS
            )
        if skipped:
            self.message_user(
                request,
                f"{skipped} notification(s) left alone: already sent or being sent.",
                messages.WARNING,
            )
        for error in errors:
            self.message_user(request, f"Could not retry {error}", messages.ERROR)


class NotificationInline(ReadOnlyMixin, admin.TabularInline):
    """Every notification of the incident with its delivery state, on the incident page."""

    model = Notification
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "notifications (delivery status)"
    fields = (
        "created_at",
        "channel",
        "recipient",
        "reason",
        "status_label",
        "attempts",
        "error_label",
        "sent_at",
    )
    readonly_fields = fields
    ordering = ("-created_at", "-id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).select_related("contact")

    @admin.display(description="Status")
    def status_label(self, obj: Notification) -> str:
        return status_badge(obj)

    @admin.display(description="Last error")
    def error_label(self, obj: Notification) -> str:
        return short_error(obj)


# After the escalation inlines (``admin_escalation``, imported above, registers those).
incident_page_inline_register(NotificationInline)
