"""Policy as data (§2.1, §2.2, §3.1, §5.1) and the service catalogue, edited here and audited
by simple-history: every save through these pages leaves a history record naming its author."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from ..models import (
    Channel,
    Contact,
    EscalationContact,
    Level,
    PriorityMatrixCell,
    ResponseRole,
    Service,
    SeverityLevel,
)
from . import display as ui
from .forms import SeverityLevelForm


def _level_order(field: str) -> Case:
    """High, Medium, Low, as the procedure's matrix reads, rather than alphabetically."""
    return Case(
        *(When(**{field: level}, then=Value(rank)) for rank, level in enumerate(Level.values)),
        output_field=IntegerField(),
    )


@admin.register(SeverityLevel)
class SeverityLevelAdmin(SimpleHistoryAdmin):
    form = SeverityLevelForm
    list_display = ("badge", "name", "response", "resolution", "channels", "business_impact")
    list_display_links = ("badge", "name")
    ordering = ("level",)
    fieldsets = [
        (None, {"fields": ["level", "name", "definition", "business_impact", "examples"]}),
        ("Targets (§2.1)", {"fields": ["response_target", "resolution_target"]}),
        ("Immediate notification (§5.1)", {"fields": ["notification_channels"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: SeverityLevel | None = None):
        # Incidents point at the level number; renumbering would silently re-rank them.
        return ("level",) if obj is not None else ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the procedure defines exactly four levels

    def has_delete_permission(self, request: HttpRequest, obj: SeverityLevel | None = None):
        return False

    @admin.display(description="Level", ordering="level")
    def badge(self, obj: SeverityLevel) -> str:
        return ui.severity_badge(obj)

    @admin.display(description="Response target", ordering="response_target")
    def response(self, obj: SeverityLevel) -> str:
        return ui.target_text(obj.response_target)

    @admin.display(description="Resolution target", ordering="resolution_target")
    def resolution(self, obj: SeverityLevel) -> str:
        return ui.target_text(obj.resolution_target)

    @admin.display(description="Notification channels")
    def channels(self, obj: SeverityLevel) -> str:
        labels = dict(Channel.choices)
        return " + ".join(labels.get(value, value) for value in obj.notification_channels)


@admin.register(PriorityMatrixCell)
class PriorityMatrixCellAdmin(SimpleHistoryAdmin):
    list_display = ("urgency", "impact", "priority")
    list_editable = ("priority",)
    list_display_links = None
    fields = ("urgency", "impact", "priority")
    readonly_fields = ("urgency", "impact")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PriorityMatrixCell]:
        return PriorityMatrixCell.objects.annotate(
            urgency_rank=_level_order("urgency"), impact_rank=_level_order("impact")
        )

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["urgency_rank", "impact_rank"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the matrix is always 3 × 3

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(SimpleHistoryAdmin):
    list_display = ("name", "phone", "email", "slack_handle", "user")
    list_select_related = ("user",)
    search_fields = ("name", "email", "phone", "slack_handle")
    raw_id_fields = ("user",)


@admin.register(ResponseRole)
class ResponseRoleAdmin(SimpleHistoryAdmin):
    list_display = ("name", "primary_contact", "backup_contact", "group", "responsibility_items")
    list_select_related = ("primary_contact", "backup_contact", "group")
    ordering = ("position", "name")
    fields = (
        "name",
        "key",
        "position",
        "responsibilities",
        "primary_contact",
        "backup_contact",
        "group",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: ResponseRole | None = None):
        # The key ties the role to code and to every incident's assignments.
        return ("key",) if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: ResponseRole | None = None):
        return False

    @admin.display(description="Responsibilities")
    def responsibility_items(self, obj: ResponseRole) -> str:
        return format_html(
            '<ul class="vigil-plain-list">{}</ul>',
            format_html_join("", "<li>{}</li>", ((item,) for item in obj.responsibility_list)),
        )


@admin.register(EscalationContact)
class EscalationContactAdmin(SimpleHistoryAdmin):
    list_display = ("name", "key", "contact", "position")
    list_select_related = ("contact",)
    ordering = ("position", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: EscalationContact | None = None):
        return ("key",) if obj is not None else ()


@admin.register(Service)
class ServiceAdmin(SimpleHistoryAdmin):
    list_display = (
        "name",
        "slug",
        "kind",
        "tier",
        "customer_facing",
        "public_name",
        "owner",
        "is_active",
    )
    list_filter = ("kind", "tier", "customer_facing", "is_active")
    list_select_related = ("owner",)
    search_fields = ("name", "slug", "public_name")
    prepopulated_fields = {"slug": ("name",)}
    raw_id_fields = ("owner",)

    def has_delete_permission(self, request: HttpRequest, obj: Service | None = None) -> bool:
        # Past incidents name their services; a retired service is marked inactive instead.
        return False
